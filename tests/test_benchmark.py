"""`fastload.benchmark` (the logic of `fastload bench`): fields and sane values on tiny datasets, never speeds."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload.benchmark import BenchOptions, parse_workers, run_benchmark
from fastload.format import Column, DatasetWriter, Schema, WriteOptions
from tests.packing.conftest import distinct_documents, write_documents

TINY = dict(batch_size=4, seq_len=32, steps=5, warmup=0, repeats=1, eos_id=0)


@pytest.fixture
def token_dataset(tmp_path):
    path = tmp_path / "tokens"
    write_documents(path, distinct_documents(np.random.default_rng(0), 80, 60), block_rows=10)
    return path


def test_a_tiny_token_dataset_gives_every_field_for_both_loaders_at_every_worker_count(token_dataset):
    report = run_benchmark(token_dataset, BenchOptions(workers=(0, 1), **TINY))

    assert [(r.loader, r.num_workers) for r in report.results] == [("naive", 0), ("fastload", 0), ("naive", 1), ("fastload", 1)]
    assert report.column == "tokens" and not report.tokenized_on_the_fly
    assert report.num_documents == 80 and report.num_blocks == 8
    for r in report.results:
        assert r.num_batches == 5
        assert r.num_tokens == 5 * 4 * 32  # the naive and fastload loaders saw the same tokens
        assert r.tokens_per_s > 0 and r.tokens_per_s_min <= r.tokens_per_s <= r.tokens_per_s_max
        assert r.batches_per_s > 0 and r.first_batch_s > 0 and r.main_ms_per_batch >= 0
        assert r.peak_rss_mb is None or r.peak_rss_mb > 0
        assert r.io_amplification > 0
    assert set(report.speedups()) == {0, 1}


def test_the_json_holds_options_machine_results_and_ratios(token_dataset):
    report = run_benchmark(token_dataset, BenchOptions(workers=(0,), **TINY))
    out = json.loads(json.dumps(report.to_json()))

    assert out["options"]["batch_size"] == 4 and out["options"]["workers"] == [0]
    assert out["machine"]["cpus"] >= 1
    assert {r["loader"] for r in out["results"]} == {"naive", "fastload"}
    for key in ("tokens_per_s", "first_batch_s", "main_ms_per_batch", "peak_rss_mb", "io_amplification", "num_tokens"):
        assert all(key in r for r in out["results"])
    assert out["fastload_vs_naive"]["0"] > 0


def test_the_table_has_a_row_per_loader_and_names_what_was_compared(token_dataset):
    table = run_benchmark(token_dataset, BenchOptions(workers=(0,), **TINY)).format_table()

    lines = table.splitlines()
    assert any(line.startswith("naive ") for line in lines) and any(line.startswith("fastload ") for line in lines)
    for column in ("M tokens/s", "vs naive", "first batch s", "main ms/batch", "peak RSS MB", "I/O x"):
        assert column in table


def test_a_text_only_dataset_is_tokenized_on_the_fly_with_the_default_tokenizer(tmp_path):
    rows = [{"text": f"document {i}: " + "the quick brown fox jumps over the lazy dog. " * (i % 7 + 1)} for i in range(60)]
    fastload.convert(rows, tmp_path / "text", quiet=True)

    report = run_benchmark(tmp_path / "text", BenchOptions(workers=(0,), **{**TINY, "eos_id": None}))

    assert report.column == "text" and report.tokenized_on_the_fly
    naive, packed = report.results
    assert naive.num_tokens == packed.num_tokens == 5 * 4 * 32


def test_a_dataset_without_tokens_or_text_is_refused_saying_what_bench_measures(tmp_path):
    schema = Schema((Column("label", "scalar", "int64"),))
    with DatasetWriter(tmp_path / "labels", schema, options=WriteOptions(block_rows=10)) as writer:
        writer.write(pa.record_batch([pa.array(np.arange(30, dtype=np.int64))], schema=schema.arrow_schema()))

    with pytest.raises(fastload.ConfigError, match="measures token datasets.*label \\(scalar\\)"):
        run_benchmark(tmp_path / "labels", BenchOptions(**TINY))


def test_a_dataset_smaller_than_one_batch_is_refused_before_anything_runs(tmp_path):
    write_documents(tmp_path / "small", [[1, 2, 3]] * 4)

    with pytest.raises(fastload.ConfigError, match="fewer than one global batch"):
        run_benchmark(tmp_path / "small", BenchOptions(**TINY))


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(seq_len=-1), dict(steps=0), dict(repeats=0), dict(warmup=-1), dict(workers=()), dict(workers=(-1,))])
def test_options_refuse_values_that_cannot_run(bad):
    with pytest.raises(fastload.ConfigError):
        BenchOptions(**bad)


def test_workers_parse_from_a_comma_list_or_fail_saying_the_expected_form():
    assert parse_workers("0,2") == (0, 2) and parse_workers("4") == (4,)
    with pytest.raises(fastload.ConfigError, match="comma-separated non-negative integers"):
        parse_workers("two")
