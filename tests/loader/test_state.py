"""state_dict() mid-epoch, load_state_dict() on a fresh loader: exactly the next batch follows."""

import numpy as np
import pytest
import torch

import fastload
from tests.loader.conftest import Counting, Shapes


def _labels(batches):
    return [b["label"].tolist() if isinstance(b, dict) else b.tolist() for b in batches]


def _take(iterator, n):
    out = []
    for _ in range(n):
        batch = next(iterator)
        out.append({"label": batch["label"].clone()} if isinstance(batch, dict) else batch.clone())
    return out


@pytest.mark.parametrize("workers_before, workers_after", [(0, 0), (2, 2), (2, 0), (0, 2)])
@pytest.mark.parametrize("use_generator", [False, True])
def test_resuming_mid_epoch_continues_with_exactly_the_next_batch(workers_before, workers_after, use_generator):
    def make(num_workers):
        generator = torch.Generator().manual_seed(11) if use_generator else None
        return fastload.DataLoader(Shapes(), batch_size=4, shuffle=True, num_workers=num_workers, generator=generator)

    torch.manual_seed(7)
    uninterrupted = _labels(make(workers_before))

    torch.manual_seed(7)
    first = make(workers_before)
    iterator = iter(first)
    head = _labels(_take(iterator, 5))
    state = first.state_dict()
    del iterator, first

    torch.manual_seed(999)  # whatever the training loop did since
    resumed = make(workers_after)
    resumed.load_state_dict(state)
    tail = _labels(resumed)
    assert head + tail == uninterrupted
    assert len(tail) == len(uninterrupted) - 5


def test_resuming_leaves_the_training_loops_random_state_alone():
    loader = fastload.DataLoader(Shapes(), batch_size=4, shuffle=True)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    resumed = fastload.DataLoader(Shapes(), batch_size=4, shuffle=True)
    resumed.load_state_dict(state)
    next(iter(resumed))
    assert torch.equal(torch.rand(3), expected)


def test_resuming_an_iterable_dataset_skips_what_was_delivered():
    def make():
        return fastload.DataLoader(Counting(40), batch_size=4, num_workers=2)

    uninterrupted = _labels(make())
    first = make()
    iterator = iter(first)
    head = _labels(_take(iterator, 3))
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert head + _labels(resumed) == uninterrupted


def test_resuming_with_a_fastload_sampler_uses_its_arithmetic_state():
    rows = np.full(10, 7)

    def make(num_workers):
        sampler = fastload.Sampler(rows, global_batch_size=5, seed=3)
        return fastload.DataLoader(Shapes(70), batch_sampler=sampler, num_workers=num_workers)

    uninterrupted = _labels(make(2))
    first = make(2)
    iterator = iter(first)
    head = _labels(_take(iterator, 4))
    state = first.state_dict()
    assert state["sampler_state"]["samples_consumed"] == 0  # the epoch's start; the batches delivered are counted apart
    resumed = make(0)
    resumed.load_state_dict(state)
    assert head + _labels(resumed) == uninterrupted


def test_a_state_that_is_not_ours_is_refused():
    with pytest.raises(fastload.ConfigError, match="lacks"):
        fastload.DataLoader(Shapes()).load_state_dict({"epoch": 1})


def test_under_torch_distributed_a_fastload_dataset_is_split_across_ranks(small_dataset, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    shares = []
    for rank in range(2):
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        loader = fastload.DataLoader(fastload.Dataset(small_dataset), batch_size=10, shuffle=True, collate_fn=lambda rows: [r["label"] for r in rows])
        assert isinstance(loader.batch_sampler, fastload.Sampler)
        shares.append([batch for batch in loader])
    assert len(shares[0]) == len(shares[1]) == 30  # 600 rows / (10 per rank x 2 ranks)
    seen = [label for share in shares for batch in share for label in batch]
    assert sorted(seen) == list(range(600))  # disjoint, and everything once


@pytest.mark.parametrize("num_workers", [0, 2])
def test_state_after_breaking_out_of_the_loop_counts_the_batches_delivered(num_workers):
    def make():
        return fastload.DataLoader(Shapes(), batch_size=4, shuffle=True, num_workers=num_workers)

    torch.manual_seed(1)
    uninterrupted = _labels(make())
    torch.manual_seed(1)
    loader = make()
    head = []
    for batch in loader:
        head.append(batch["label"].tolist())
        if len(head) == 6:
            break
    state = loader.state_dict()  # the for loop's iterator is gone by now
    assert state["batches_yielded"] == 6
    resumed = make()
    resumed.load_state_dict(state)
    assert head + _labels(resumed) == uninterrupted


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_resuming_later_epochs_with_persistent_workers_gives_the_same_batches(epoch):
    def make():
        return fastload.DataLoader(Shapes(40), batch_size=4, shuffle=True, num_workers=2, persistent_workers=True)

    torch.manual_seed(5)
    reference = make()
    epochs = [_labels(reference) for _ in range(epoch + 1)]
    torch.manual_seed(5)
    first = make()
    for _ in range(epoch):
        _labels(first)
    iterator = iter(first)
    head = _labels(_take(iterator, 3))
    state = first.state_dict()
    del iterator
    resumed = make()
    resumed.load_state_dict(state)
    assert head + _labels(resumed) == epochs[epoch]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_state_taken_at_the_end_of_an_epoch_resumes_into_the_next_epoch(num_workers):
    loader = fastload.DataLoader(Shapes(16), batch_size=4, shuffle=True, num_workers=num_workers)
    assert len(_labels(loader)) == 4
    resumed = fastload.DataLoader(Shapes(16), batch_size=4, shuffle=True, num_workers=num_workers)
    resumed.load_state_dict(loader.state_dict())
    assert len(_labels(resumed)) == 4


def test_state_dict_is_refused_with_out_of_order_delivery():
    loader = fastload.DataLoader(Shapes(16), batch_size=4, num_workers=2, in_order=False)
    next(iter(loader))
    with pytest.raises(fastload.ConfigError, match="needs in_order=True"):
        loader.state_dict()


def test_breaking_out_and_iterating_again_loses_no_batch_of_a_fastload_sampler():
    rows = np.full(4, 16)
    loader = fastload.DataLoader(Shapes(64), batch_sampler=fastload.Sampler(rows, global_batch_size=4, shuffle=False), num_workers=2)
    seen = []
    for i, batch in enumerate(loader):
        seen.extend(batch["label"].tolist())
        if i == 1:
            break
    seen.extend(label for batch in loader for label in batch["label"].tolist())
    assert sorted(seen) == sorted([i % 7 for i in range(64)]) and len(seen) == 64
