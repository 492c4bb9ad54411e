"""DDP with two CPU processes (gloo), started the way torchrun starts them: each rank its disjoint share."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from fastload.train import TrainConfig, train
from tests.train.conftest import TINY

STEPS = 6


def _config(out, batch_size: int) -> TrainConfig:
    return TrainConfig(model=TINY, steps=STEPS, batch_size=batch_size, workers=0, lr=3e-3, warmup_steps=2, eval_every=3,
                       eval_batches=2, log_every=1, out=str(out), plot=False, validation=0.1, device="cpu")


def _rank_main(rank: int, world_size: int, port: int, corpus: str, out: str) -> None:
    # What torchrun sets for each process it starts.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    rows: list = []
    result = train(corpus, _config(out, batch_size=2), on_batch=lambda step, batch: rows.append((step, batch["input_ids"].clone())))
    torch.save(
        {"steps": result.steps, "rows": rows, "params": [p.detach().clone() for p in result.model.parameters()], "records": result.records},
        os.path.join(out, f"rank{rank}.pt"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_get_disjoint_halves_of_each_global_batch_take_equal_steps_and_stay_in_sync(corpus, tmp_path):
    mp.start_processes(_rank_main, args=(2, _free_port(), str(corpus), str(tmp_path)), nprocs=2, start_method="spawn", join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    assert ranks[0]["steps"] == ranks[1]["steps"] == STEPS
    assert [s for s, _ in ranks[0]["rows"]] == [s for s, _ in ranks[1]["rows"]] == list(range(STEPS))
    single: list = []
    train(corpus, _config(tmp_path / "single", batch_size=4), on_batch=lambda step, batch: single.append(batch["input_ids"].clone()))
    for step in range(STEPS):
        mine, theirs = ranks[0]["rows"][step][1], ranks[1]["rows"][step][1]
        assert mine.shape == theirs.shape == (2, 32)
        rows0, rows1 = {tuple(r.tolist()) for r in mine}, {tuple(r.tolist()) for r in theirs}
        assert not rows0 & rows1  # disjoint
        assert rows0 | rows1 == {tuple(r.tolist()) for r in single[step]}  # together: the global batch of one process
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(a, b)  # gradients were averaged: the replicas never diverged
    assert ranks[1]["records"] == [] and any(r["kind"] == "eval" for r in ranks[0]["records"])  # rank 0 logs
    assert next(r for r in ranks[0]["records"] if r["kind"] == "start")["world_size"] == 2
