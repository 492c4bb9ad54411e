"""fastload.DataLoader over a PackedDataset: same batches for any number of workers, exact resume."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastload
from fastload.errors import ConfigError
from tests.packing.conftest import distinct_documents, write_documents

EOS = 0


@pytest.fixture(scope="module")
def packed_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("packed") / "ds"
    write_documents(path, distinct_documents(np.random.default_rng(7), 1500, 80), block_rows=30)
    return path


def _loader(path, *, num_workers=0, batch_size=4, shuffle=True, **kwargs):
    packed = fastload.PackedDataset(path, seq_len=31, eos_id=EOS)
    return fastload.DataLoader(packed, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, **kwargs)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def _clone(batches) -> list:
    return [{k: v.clone() for k, v in batch.items()} for batch in batches]


def test_batches_are_dicts_of_tensors_and_the_same_for_any_number_of_workers(packed_path):
    serial = _clone(_loader(packed_path))
    assert set(serial[0]) == {"input_ids", "labels", "position_ids", "document_ids"}
    assert serial[0]["input_ids"].shape == (4, 31) and serial[0]["input_ids"].dtype == torch.int64
    assert serial[0]["document_ids"].dtype == torch.int32
    for workers in (1, 2):
        assert _same(_clone(_loader(packed_path, num_workers=workers)), serial)


def test_epochs_differ_and_repeat_with_the_seed(packed_path):
    loader = _loader(packed_path, num_workers=2, persistent_workers=True)
    first, second = _clone(loader), _clone(loader)
    assert len(first) == len(second) == len(loader)
    assert not _same(first, second)
    again = _loader(packed_path)
    assert _same(_clone(again), first) and _same(_clone(again), second)


def test_every_token_of_the_epoch_comes_once(packed_path):
    loader = _loader(packed_path, num_workers=2, batch_size=8)
    seen = []
    for batch in loader:
        seen.append(batch["input_ids"].flatten().clone())
        seen.append(batch["labels"][:, -1].clone())  # the last token of each row is only a label
    tokens = torch.cat(seen)
    real = tokens[tokens != EOS]
    assert len(torch.unique(real)) == len(real)
    total = sum(int(x) for x in fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS).doc_lengths) + 1500
    assert total - len(tokens) < 8 * 32  # only the remainder is dropped


def test_shuffle_false_is_the_storage_order(packed_path):
    packed = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS)
    first = next(iter(fastload.DataLoader(packed, batch_size=4)))
    assert torch.equal(first["input_ids"], torch.stack([torch.from_numpy(packed[i]["input_ids"]) for i in range(4)]))


@pytest.mark.parametrize("before, after", [(0, 2), (2, 0), (2, 1)])
def test_resume_mid_epoch_continues_with_exactly_the_next_batch(packed_path, before, after):
    reference = _clone(_loader(packed_path))
    loader = _loader(packed_path, num_workers=before)
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = loader.state_dict()
    del it
    resumed = _loader(packed_path, num_workers=after)
    resumed.load_state_dict(state)
    assert _same(_clone(resumed), reference[5:])


def test_resume_refuses_another_configuration(packed_path):
    loader = _loader(packed_path)
    next(iter(loader))
    state = loader.state_dict()
    other = _loader(packed_path, batch_size=8)
    other.load_state_dict(state)
    with pytest.raises(ConfigError, match="global_batch_size 4"):
        iter(other)


def test_ranks_split_every_global_batch(packed_path):
    packed = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS)
    whole = [packed[key] for key in packed.batch_sampler(8)]
    ranks = [[packed[key] for key in packed.batch_sampler(8, rank=r, world_size=2)] for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for b, batch in enumerate(whole):
        for name, array in batch.items():
            assert np.array_equal(np.concatenate([ranks[0][b][name], ranks[1][b][name]]), array)


def test_torch_dataloader_reads_it_as_rows(packed_path):
    packed = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS)
    batch = next(iter(torch.utils.data.DataLoader(packed, batch_size=3)))
    assert batch["input_ids"].shape == (3, 31)
    assert torch.equal(batch["labels"][0], torch.from_numpy(packed[0]["labels"]))


def test_on_the_fly_tokenization_equals_converting_with_the_tokenizer(tmp_path):
    tokenizer = fastload.Tokenizer.default()
    lines = [json.dumps({"text": f"Document {i}: " + " ".join(f"word{j * i % 97}" for j in range(i % 40))}) for i in range(400)]
    source = tmp_path / "docs.jsonl.gz"
    with gzip.open(source, "wt") as f:
        f.write("\n".join(lines) + "\n")
    fastload.convert(source, tmp_path / "tokens", tokenizer=tokenizer, block_rows=37, quiet=True)
    fastload.convert(source, tmp_path / "text", block_rows=37, quiet=True)
    pre = fastload.PackedDataset(tmp_path / "tokens", seq_len=63)
    fly = fastload.PackedDataset(tmp_path / "text", seq_len=63, tokenizer=tokenizer)
    assert fly.eos_id == pre.eos_id == tokenizer.eos_id
    expected = _clone(fastload.DataLoader(pre, batch_size=4, shuffle=True))
    assert _same(_clone(fastload.DataLoader(fly, batch_size=4, shuffle=True, num_workers=2)), expected)
    with pytest.raises(ConfigError, match="tokenizer="):
        fastload.PackedDataset(tmp_path / "text", seq_len=63)


def test_loader_arguments_that_contradict_packing_are_refused(packed_path):
    packed = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS, remainder="pad")
    with pytest.raises(ConfigError, match="remainder='pad'"):
        fastload.DataLoader(packed, batch_size=4, drop_last=True)


def test_token_counts_of_a_text_dataset_are_cached_between_runs(tmp_path, monkeypatch):
    from fastload.packing.documents import TokenDocuments

    tokenizer = fastload.Tokenizer.default()
    fastload.convert([{"text": f"document number {i} " * (i % 7)} for i in range(120)], tmp_path / "text", block_rows=25, quiet=True)
    first = fastload.PackedDataset(tmp_path / "text", seq_len=15, tokenizer=tokenizer).doc_lengths
    assert first.tolist() == [len(tokenizer.encode(f"document number {i} " * (i % 7))) for i in range(120)]

    def fail(self, **_):
        raise AssertionError("counted again instead of reading the cache")

    monkeypatch.setattr(TokenDocuments, "_tokenize_to_count", fail)
    assert np.array_equal(fastload.PackedDataset(tmp_path / "text", seq_len=15, tokenizer=tokenizer).doc_lengths, first)
    monkeypatch.setenv("FASTLOAD_CACHE_DIR", "off")
    with pytest.raises(AssertionError, match="counted again"):
        fastload.PackedDataset(tmp_path / "text", seq_len=15, tokenizer=tokenizer).doc_lengths


def test_saved_token_counts_passed_back_give_the_same_batches_without_counting(tmp_path, monkeypatch):
    from fastload.packing.documents import TokenDocuments

    tokenizer = fastload.Tokenizer.default()
    monkeypatch.setenv("FASTLOAD_CACHE_DIR", "off")  # only the saved file can spare the count
    fastload.convert([{"text": f"saved counts {i} " * (i % 5)} for i in range(90)], tmp_path / "text", block_rows=20, quiet=True)
    counted = fastload.PackedDataset(tmp_path / "text", seq_len=15, tokenizer=tokenizer)
    counted.save_lengths(tmp_path / "lengths.npy")
    expected = _clone(fastload.DataLoader(counted, batch_size=4, shuffle=True))

    def fail(self, **_):
        raise AssertionError("counted again instead of using doc_lengths")

    monkeypatch.setattr(TokenDocuments, "_tokenize_to_count", fail)
    reloaded = fastload.PackedDataset(tmp_path / "text", seq_len=15, tokenizer=tokenizer, doc_lengths=np.load(tmp_path / "lengths.npy"))
    assert np.array_equal(reloaded.doc_lengths, counted.doc_lengths)
    assert _same(_clone(fastload.DataLoader(reloaded, batch_size=4, shuffle=True)), expected)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(done=st.integers(0, 40), world=st.sampled_from([1, 2, 4]), new_world=st.sampled_from([1, 2, 4]), epoch=st.integers(0, 2))
def test_a_saved_position_continues_with_the_next_global_batch_for_any_world_size(packed_path, done, world, new_world, epoch):
    packed = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS)
    sampler = packed.batch_sampler(8, rank=0, world_size=world)
    sampler.set_epoch(epoch)
    done = min(done, len(sampler))
    state = sampler.state_dict(batches_done=done)
    resumed = packed.batch_sampler(8, rank=0, world_size=new_world)
    resumed.load_state_dict(state)
    keys = list(resumed)
    assert [k.batch for k in keys] == list(range(done, len(sampler)))
    assert all(k.epoch == epoch and k.world_size == new_world for k in keys)


def test_split_blocks_gives_disjoint_train_and_validation_batches(packed_path):
    train_blocks, validation_blocks = fastload.split_blocks(packed_path, validation=0.2, seed=1)
    assert not set(train_blocks) & set(validation_blocks) and len(train_blocks) + len(validation_blocks) == fastload.Dataset(packed_path).num_blocks
    train = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS, blocks=train_blocks)
    validation = fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS, blocks=validation_blocks)
    seen = [torch.cat([b["input_ids"].flatten() for b in fastload.DataLoader(d, batch_size=4, shuffle=True)]) for d in (train, validation)]
    a, b = (set(t[t != EOS].tolist()) for t in seen)
    assert a and b and not a & b


class _FailsAtBatch5(fastload.PackedDataset):
    def __fastload_batch__(self, key, allocate):
        if key.batch == 5:
            raise ValueError("batch 5 is cursed")
        return super().__fastload_batch__(key, allocate)


def test_an_error_inside_a_group_of_tasks_comes_in_order_with_its_type(packed_path):
    loader = fastload.DataLoader(_FailsAtBatch5(packed_path, seq_len=31, eos_id=EOS), batch_size=4, shuffle=True, num_workers=2)
    reference = _clone(fastload.DataLoader(fastload.PackedDataset(packed_path, seq_len=31, eos_id=EOS), batch_size=4, shuffle=True))
    got = []
    with pytest.raises(ValueError, match="batch 5 is cursed"):
        for batch in loader:
            got.append({k: v.clone() for k, v in batch.items()})
    assert _same(got, reference[:5])
