"""fastload.DataLoader gives exactly torch's batches, in torch's order, for the same arguments and seed."""

import pytest
import torch

import fastload
from tests.loader.conftest import Counting, Shapes, assert_same, run_both


def _pair_equal(make_loader, **kwargs):
    torch_batches, fastload_batches = run_both(make_loader, **kwargs)
    assert_same(torch_batches, fastload_batches)
    return fastload_batches


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("shuffle", [False, True])
def test_nested_batches_match_torch(num_workers, shuffle):
    batches = _pair_equal(lambda cls: cls(Shapes(), batch_size=8, shuffle=shuffle, num_workers=num_workers))
    assert len(batches[0]) == 8


def test_drop_last_generator_and_len_match_torch():
    def make(cls):
        return cls(Shapes(), batch_size=8, shuffle=True, drop_last=True, num_workers=2, generator=torch.Generator().manual_seed(5))

    batches = _pair_equal(make)
    assert len(batches[0]) == 7 == len(make(fastload.DataLoader))


def test_batch_size_none_and_custom_collate_match_torch():
    _pair_equal(lambda cls: cls(Shapes(), batch_size=None, num_workers=2))
    _pair_equal(lambda cls: cls(Shapes(), batch_size=5, num_workers=2, collate_fn=lambda items: [item["name"] for item in items]))
    _pair_equal(lambda cls: cls(Shapes(), batch_size=5, num_workers=2, collate_fn=lambda items: torch.stack([i["image"] for i in items]).float()))


def test_custom_sampler_and_batch_sampler_match_torch():
    sampler = list(range(60, 0, -3))
    _pair_equal(lambda cls: cls(Shapes(), batch_size=4, sampler=sampler, num_workers=2))
    batch_sampler = [[1, 2, 3], [10], [5, 50, 7, 8]]
    _pair_equal(lambda cls: cls(Shapes(), batch_sampler=batch_sampler, num_workers=2))


@pytest.mark.parametrize("shard", [True, False])
def test_iterable_datasets_with_and_without_worker_sharding_match_torch(shard):
    _pair_equal(lambda cls: cls(Counting(50, shard=shard), batch_size=4, num_workers=2))
    _pair_equal(lambda cls: cls(Counting(50, shard=shard), batch_size=4, num_workers=2, drop_last=True))


def test_persistent_workers_across_epochs_match_torch():
    batches = _pair_equal(lambda cls: cls(Shapes(), batch_size=8, shuffle=True, num_workers=2, persistent_workers=True), epochs=3)
    assert [b["label"].tolist() for b in batches[0]] != [b["label"].tolist() for b in batches[1]]  # epochs reshuffle


def test_worker_seeds_and_worker_info_match_torch():
    class Seeds(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            import random

            import numpy as np

            info = torch.utils.data.get_worker_info()
            return torch.tensor([info.id, info.num_workers, info.seed % 2**31, random.randint(0, 10**6), int(np.random.randint(0, 10**6)), int(torch.randint(0, 10**6, ()))])

    _pair_equal(lambda cls: cls(Seeds(), batch_size=3, num_workers=2))


def test_worker_init_fn_runs_in_each_worker():
    def init(worker_id):
        torch.utils.data.get_worker_info().dataset.offset = 100 * (worker_id + 1)

    class Offset(torch.utils.data.Dataset):
        offset = 0

        def __len__(self):
            return 8

        def __getitem__(self, i):
            return self.offset + i

    _pair_equal(lambda cls: cls(Offset(), batch_size=2, num_workers=2, worker_init_fn=init))


def test_spawn_and_forkserver_contexts_give_the_same_batches():
    for context in ("spawn", "forkserver"):
        _pair_equal(lambda cls: cls(Shapes(20), batch_size=4, num_workers=2, multiprocessing_context=context))


def test_early_break_then_iterating_again_matches_torch():
    def make(cls):
        loader = cls(Shapes(), batch_size=8, shuffle=True, num_workers=2)
        out = []
        for i, batch in enumerate(loader):
            out.append(batch["label"].clone())
            if i == 2:
                break
        out.extend(batch["label"].clone() for batch in loader)
        return out

    torch.manual_seed(3)
    expected = make(torch.utils.data.DataLoader)
    torch.manual_seed(3)
    got = make(fastload.DataLoader)
    assert_same(expected, got)


def test_out_of_order_delivery_gives_the_same_batches_as_a_set():
    torch.manual_seed(0)
    got = [b["label"].tolist() for b in fastload.DataLoader(Shapes(), batch_size=8, num_workers=2, in_order=False)]
    expected = [b["label"].tolist() for b in torch.utils.data.DataLoader(Shapes(), batch_size=8)]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(num_workers=-1),
        dict(timeout=-1),
        dict(shuffle=True, sampler=[0, 1]),
        dict(batch_sampler=[[0]], batch_size=2),
        dict(prefetch_factor=2),  # prefetch_factor needs workers
        dict(persistent_workers=True),
    ],
)
def test_invalid_arguments_raise_what_torch_raises(kwargs):
    with pytest.raises(Exception) as torch_error:
        torch.utils.data.DataLoader(Shapes(), **kwargs)
    with pytest.raises(type(torch_error.value)) as ours:
        fastload.DataLoader(Shapes(), **kwargs)
    assert str(ours.value) == str(torch_error.value)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fastload_dataset_in_storage_order_matches_torch(small_dataset, num_workers):
    # With shuffle=True a fastload.Dataset gets fastload's locality-aware order instead of torch's
    # RandomSampler, on purpose (tests/loader/test_generic_order.py); storage order stays torch's.
    ds = fastload.Dataset(small_dataset)
    collate = lambda rows: torch.tensor([r["label"] for r in rows])  # noqa: E731
    batches = _pair_equal(lambda cls: cls(ds, batch_size=32, shuffle=False, num_workers=num_workers, collate_fn=collate))
    assert torch.cat(batches[0]).tolist() == list(range(600)) and len(batches[0][-1]) == 600 % 32
