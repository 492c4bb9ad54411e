"""A batch's slot is never reused while any tensor, view or slice of the batch is alive."""

import gc
import warnings

import torch

import fastload
from tests.loader.conftest import Shapes


def test_a_kept_batch_stays_intact_while_the_loader_runs_on():
    loader = fastload.DataLoader(Shapes(400), batch_size=4, num_workers=2)
    kept = kept_copy = None
    for i, batch in enumerate(loader):
        if i == 2:
            kept, kept_copy = batch, {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        if kept is not None:
            for key, value in kept_copy.items():
                assert torch.equal(kept[key], value), f"batch 2's {key} changed while batch {i} was loaded"
    assert i == 99


def test_a_kept_slice_keeps_its_slot_alive():
    loader = fastload.DataLoader(Shapes(160), batch_size=4, num_workers=2)
    piece = None
    for i, batch in enumerate(loader):
        if i == 1:
            piece = batch["image"][1:3, 0]
            expected = piece.clone()
        del batch
        if i % 8 == 0:
            gc.collect()  # run finalizers of dead batches, so their slots really are reused
        if piece is not None:
            assert torch.equal(piece, expected)
    assert i == 39


def test_holding_every_batch_warns_once_and_stays_correct():
    loader = fastload.DataLoader(Shapes(120), batch_size=4, num_workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(loader)
    holding = [w for w in caught if "holds every one" in str(w.message)]
    assert len(holding) == 1
    assert [int(b["label"][0]) for b in batches] == [(4 * i) % 7 for i in range(30)]
    assert all(torch.equal(b["image"][:, 0, 0, 0], torch.arange(4 * i, 4 * i + 4, dtype=torch.uint8)) for i, b in enumerate(batches))


def test_slots_return_to_the_pool_when_batches_die():
    loader = fastload.DataLoader(Shapes(200), batch_size=4, num_workers=2)
    it = iter(loader)
    for _ in range(10):
        next(it)
    gc.collect()
    in_use = it._pool._leased
    assert sum(in_use.values()) <= it._max_tasks + 1  # in flight + the one just handed out
