"""Packed mixtures: exact rows per source in every batch, each source's rows as its own packing, workers and ranks agree, O(1) resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastload
from fastload.errors import ConfigError, FormatError
from fastload.packing.mixture import PackedMixture
from fastload.sampler import SamplerOptions
from fastload.format import DatasetWriter, WriteOptions
from tests.packing.conftest import TOKENS, write_documents
import pyarrow as pa

EOS = 0


def _sources(tmp_path, sizes=(300, 200, 120), seed=0):
    """Datasets whose tokens say their source: source s uses ids in [1000·(s+1), 1000·(s+1) + 999]."""
    rng = np.random.default_rng(seed)
    paths = {}
    for s, n in enumerate(sizes):
        docs = [list(1000 * (s + 1) + rng.integers(0, 1000, rng.integers(1, 40))) for _ in range(n)]
        paths[f"src{s}"] = tmp_path / f"src{s}"
        write_documents(paths[f"src{s}"], docs, block_rows=9, eos_id=EOS)
    return paths


def _mixture(paths, weights=(5, 3, 2), **kwargs):
    return fastload.Mixture({name: (path, w) for (name, path), w in zip(paths.items(), weights)}, **kwargs)


def test_packed_dataset_of_a_mixture_is_a_packed_mixture(tmp_path):
    packed = fastload.PackedDataset(_mixture(_sources(tmp_path)), seq_len=16, eos_id=EOS)
    assert isinstance(packed, PackedMixture)
    with pytest.raises(ConfigError, match="remainder='drop'"):
        fastload.PackedDataset(_mixture(_sources(tmp_path / "b")), seq_len=16, eos_id=EOS, remainder="pad")


def test_every_batch_holds_each_source_in_proportion_and_rows_come_from_their_source(tmp_path):
    packed = fastload.PackedDataset(_mixture(_sources(tmp_path)), seq_len=16, eos_id=EOS)
    loader = fastload.DataLoader(packed, batch_size=10, num_workers=0, shuffle=True)
    assert len(loader) > 10
    delivered = np.zeros(3, np.int64)
    for t, batch in enumerate(loader):
        source = batch["source"].numpy()
        counts = np.bincount(source, minlength=3)
        assert counts.tolist() == [5, 3, 2]  # weights 5:3:2 of 10 rows: exact every batch
        delivered += counts
        tokens = batch["input_ids"].numpy()
        for row, s in zip(tokens, source):
            real = row[row != EOS]
            assert np.all((real >= 1000 * (s + 1)) & (real < 1000 * (s + 2))), "a row holds another source's tokens"
    assert delivered.tolist() == [5 * len(loader), 3 * len(loader), 2 * len(loader)]


def test_workers_and_ranks_give_the_same_batches(tmp_path):
    mix = _mixture(_sources(tmp_path), weights=(0.6, 0.3, 0.1))  # 8 rows: 4.8, 2.4, 0.8 — shared lanes at work
    packed = fastload.PackedDataset(mix, seq_len=12, eos_id=EOS)
    zero = [dict(b) for b in fastload.DataLoader(packed, batch_size=8, num_workers=0, shuffle=True)]
    two = [{k: v.clone() for k, v in b.items()} for b in fastload.DataLoader(packed, batch_size=8, num_workers=2, shuffle=True)]
    assert len(zero) == len(two)
    for a, b in zip(zero, two):
        for name in a:
            assert torch.equal(a[name], b[name]), name
    # ranks: world 2 and 4 concatenate to the single-rank batch
    options = packed.sampler_options(shuffle=True)
    for world in (2, 4):
        samplers = [packed.batch_sampler(8, rank=r, world_size=world) for r in range(world)]
        for t, keys in enumerate(zip(*samplers)):
            if t == 5:
                break
            parts = [packed.__fastload_batch__(k, np.empty) for k in keys]
            for name in zero[t]:
                assert np.array_equal(np.concatenate([p[name] for p in parts]), zero[t][name].numpy()), (world, t, name)
    assert options.order == "block_window"


def test_each_source_is_read_once_per_pass(tmp_path):
    """Over a run several passes long, each source's packed rows of one pass appear once each."""
    paths = _sources(tmp_path, sizes=(60, 40, 30))
    packed = fastload.PackedDataset(_mixture(paths, weights=(1, 1, 1)), seq_len=8, eos_id=EOS)
    sampler = packed.batch_sampler(6)
    plan = sampler.plan
    seen = {}
    for t in range(3 * sampler.epoch_batches):
        for piece in plan.pieces(t, 0, 6):
            for row in range(piece.lo, piece.hi):
                key = (piece.source, piece.epoch, piece.batch, row)
                assert key not in seen, f"source row {key} read twice"
                seen[key] = t
    consumed = plan.consumed(3 * sampler.epoch_batches)
    for s, name in enumerate(plan.names):
        assert consumed[name]["passes"] >= 1
        per_pass = int(plan.batches_per_pass[s]) * int(plan.layout.source_columns[s])
        for e in range(consumed[name]["passes"]):
            assert sum(1 for k in seen if k[0] == s and k[1] == e) == per_pass


def test_resume_is_exact_and_the_state_counts_each_source(tmp_path):
    packed = fastload.PackedDataset(_mixture(_sources(tmp_path), weights=(0.6, 0.3, 0.1)), seq_len=12, eos_id=EOS)
    loader = fastload.DataLoader(packed, batch_size=8, num_workers=0, shuffle=True)
    full = [dict(b) for b in loader]
    loader = fastload.DataLoader(packed, batch_size=8, num_workers=0, shuffle=True)
    taken = []
    for i, batch in enumerate(loader):
        taken.append(dict(batch))
        if i == 6:
            state = loader.state_dict()
            break
    assert state["sampler_state"]["kind"] == "mixture" and state["batches_yielded"] == 7
    resumed = fastload.DataLoader(packed, batch_size=8, num_workers=2, shuffle=True)
    resumed.load_state_dict(state)
    rest = [{k: v.clone() for k, v in b.items()} for b in resumed]
    for a, b in zip(full[7:], rest):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["source"], b["source"])
    assert len(rest) == len(full) - 7
    # the per-source counts in the state equal what was delivered
    counts = np.bincount(torch.cat([b["source"] for b in taken]).numpy(), minlength=3)
    sampler = packed.batch_sampler(8)
    sampler.load_state_dict(state["sampler_state"])  # the epoch's start, plus the batches delivered since
    consumed = sampler.consumed(batches_done=state["batches_yielded"])
    assert [consumed[n]["rows"] for n in ("src0", "src1", "src2")] == counts.tolist()
    assert consumed["src0"]["tokens"] == counts[0] * 13


def test_resuming_with_another_mixture_says_what_differs(tmp_path):
    paths = _sources(tmp_path)
    sampler = fastload.PackedDataset(_mixture(paths), seq_len=12, eos_id=EOS).batch_sampler(10)
    state = sampler.state_dict(batches_done=3)
    other = fastload.PackedDataset(_mixture(paths, weights=(4, 4, 2)), seq_len=12, eos_id=EOS).batch_sampler(10)
    with pytest.raises(ConfigError, match=r"'src0' weight 1/2 \(now 2/5\)"):
        other.load_state_dict(state)


def test_sources_that_disagree_are_refused_by_name(tmp_path):
    paths = _sources(tmp_path)
    for name, eos in (("a", 0), ("b", 3)):
        writer = DatasetWriter(tmp_path / name, TOKENS, options=WriteOptions(block_rows=9))
        writer.write(pa.record_batch([pa.array([np.arange(1, 6, dtype=np.uint32)] * 50, pa.list_(pa.uint32()))], schema=TOKENS.arrow_schema()))
        writer.close(tokenizer={"name": f"tok-{name}", "eos_id": eos})
    mix = fastload.Mixture({"web": (tmp_path / "a", 1), "odd": (tmp_path / "b", 1)})
    with pytest.raises(ConfigError, match="'web' and 'odd' have different eos_id"):
        fastload.PackedDataset(mix, seq_len=8)
    with pytest.raises(ConfigError, match="different tokenizers"):
        fastload.PackedDataset(mix, seq_len=8, eos_id=0)
    small = fastload.Mixture({"web": (paths["src0"], 1), "tiny": (paths["src2"], 1000)})
    with pytest.raises(ConfigError, match=r"source 'tiny' holds 2,421 tokens, less than the 1000 rows \(at most\)"):
        fastload.PackedDataset(small, seq_len=64, eos_id=EOS).batch_sampler(1000)
    with pytest.raises(FormatError, match="mixture source 'gone': dataset folder .* does not exist"):
        fastload.PackedDataset(fastload.Mixture({"gone": (tmp_path / "nowhere", 1)}), seq_len=8, eos_id=EOS)


def test_a_schedule_switches_the_weights_at_its_batch_and_resumes_across_it(tmp_path):
    paths = _sources(tmp_path)
    mix = fastload.Mixture({name: (path, w) for (name, path), w in zip(paths.items(), (5, 3, 2))},
                           schedule={6: {"src0": 2, "src1": 2, "src2": 6}})  # an "annealing" stage from batch 6
    packed = fastload.PackedDataset(mix, seq_len=12, eos_id=EOS)
    loader = fastload.DataLoader(packed, batch_size=10, num_workers=0, shuffle=True)
    full = [dict(b) for b in loader]
    counts = [torch.bincount(b["source"], minlength=3).tolist() for b in full]
    assert counts[:6] == [[5, 3, 2]] * 6 and counts[6:12] == [[2, 2, 6]] * 6
    for batch in full:  # every row still holds its source's tokens
        for row, s in zip(batch["input_ids"].numpy(), batch["source"].numpy()):
            real = row[row != EOS]
            assert np.all((real >= 1000 * (s + 1)) & (real < 1000 * (s + 2)))
    loader = fastload.DataLoader(packed, batch_size=10, num_workers=0, shuffle=True)
    for i, _ in enumerate(loader):
        if i == 3:
            state = loader.state_dict()
            break
    resumed = fastload.DataLoader(packed, batch_size=10, num_workers=2, shuffle=True)
    resumed.load_state_dict(state)
    rest = [{k: v.clone() for k, v in b.items()} for b in resumed]
    assert len(rest) == len(full) - 4
    for a, b in zip(full[4:], rest):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["source"], b["source"])
    other = fastload.PackedDataset(fastload.Mixture({name: (path, w) for (name, path), w in zip(paths.items(), (5, 3, 2))}), seq_len=12, eos_id=EOS)
    sampler = other.batch_sampler(10)
    with pytest.raises(ConfigError, match="cannot resume"):
        sampler.load_state_dict(state["sampler_state"])


def test_schedules_are_checked_when_the_mixture_is_made(tmp_path):
    paths = _sources(tmp_path)
    sources = {name: (path, 1) for name, path in paths.items()}
    with pytest.raises(ConfigError, match="must weight every source"):
        fastload.Mixture(sources, schedule={10: {"src0": 1}})
    with pytest.raises(ConfigError, match="batch >= 1"):
        fastload.Mixture(sources, schedule={0: {"src0": 1, "src1": 1, "src2": 1}})
    toml = tmp_path / "m.toml"
    toml.write_text("".join(f'[sources.{n}]\npath = "{p}"\nweight = 1\n' for n, p in paths.items())
                    + '[[schedule]]\nfrom_batch = 4\nweights = { src0 = 0, src1 = 1, src2 = 1 }\n')
    mix = fastload.Mixture.from_toml(toml)
    assert mix.schedule[0][0] == 4 and str(mix.schedule[0][1]["src0"]) == "0"
    packed = fastload.PackedDataset(mix, seq_len=12, eos_id=EOS)
    sources_seen = [set(packed.__fastload_batch__(key, np.empty)["source"].tolist()) for key, _ in zip(packed.batch_sampler(6), range(8))]
    assert all(0 in s for s in sources_seen[:4]) and all(0 not in s for s in sources_seen[4:])


def test_max_repetitions_refuses_a_run_that_would_read_a_source_too_often(tmp_path):
    paths = _sources(tmp_path, sizes=(300, 200, 30))
    mix = fastload.Mixture({name: (path, w) for (name, path), w in zip(paths.items(), (1, 1, 1))}, max_repetitions={"src2": 2})
    packed = fastload.PackedDataset(mix, seq_len=12, eos_id=EOS)
    packed.check_run(5, 6)
    with pytest.raises(ConfigError, match=r"'src2' would be read \d+ times in 2,000 global batches of 6, more than its max_repetitions=2"):
        packed.check_run(2000, 6)
    with pytest.raises(ConfigError, match="max_repetitions of source 'src2' must be a positive integer"):
        fastload.Mixture({"src2": (paths["src2"], 1)}, max_repetitions={"src2": 0})


def test_resuming_with_another_world_size_continues_the_same_global_batches(tmp_path):
    mix = fastload.Mixture({name: (path, w) for (name, path), w in zip(_sources(tmp_path).items(), (0.6, 0.3, 0.1))},
                           schedule={5: {"src0": 1, "src1": 1, "src2": 2}})
    packed = fastload.PackedDataset(mix, seq_len=12, eos_id=EOS)
    state = packed.batch_sampler(8).state_dict(batches_done=3)  # one rank, 3 batches in: across the weight change at batch 5 next
    keys = list(packed.batch_sampler(8))
    for world in (2, 4):
        ranks = [packed.batch_sampler(8, rank=r, world_size=world) for r in range(world)]
        for sampler in ranks:
            sampler.load_state_dict(state)
        for t, rank_keys in zip(range(3, 9), zip(*ranks)):
            parts = [packed.__fastload_batch__(k, np.empty) for k in rank_keys]
            whole = packed.__fastload_batch__(keys[t], np.empty)
            for name in whole:
                assert np.array_equal(np.concatenate([p[name] for p in parts]), whole[name]), (world, t, name)


def test_a_mixture_of_text_tokenized_on_the_fly_equals_the_mixture_of_its_tokens(tmp_path):
    # every batch asks for documents of several sources in one kernel call: each is tokenized and the call resumed
    tokenizer = fastload.Tokenizer.default()
    rng = np.random.default_rng(3)
    text, tokens = {}, {}
    for s, n in enumerate((150, 90)):
        rows = [{"text": " ".join(f"w{rng.integers(0, 500)}" for _ in range(rng.integers(0, 80)))} for _ in range(n)]
        text[f"s{s}"], tokens[f"s{s}"] = tmp_path / f"text{s}", tmp_path / f"tokens{s}"
        fastload.convert(rows, text[f"s{s}"], block_rows=20, quiet=True)
        fastload.convert(rows, tokens[f"s{s}"], tokenizer=tokenizer, block_rows=20, quiet=True)
    fly = fastload.PackedDataset(fastload.Mixture({name: (path, w) for (name, path), w in zip(text.items(), (2, 1))}), seq_len=31, tokenizer=tokenizer)
    pre = fastload.PackedDataset(fastload.Mixture({name: (path, w) for (name, path), w in zip(tokens.items(), (2, 1))}), seq_len=31)
    sampler = fly.batch_sampler(6)
    for key, _ in zip(sampler, range(60)):
        expected = pre[key]
        for name, array in fly[key].items():
            assert np.array_equal(array, expected[name]), (name, key.batch)
    assert all(source._blocks.documents_tokenized > 0 for source in fly.sources)
