"""`fastload.benchmark` (the logic of `fastload bench`): fields and sane values on tiny datasets, never speeds.

Also what `bench/` shares with it: `proc` (memory, machine) and `collate` (the
naive packing collate), which a peer's benchmark process imports and which
must therefore load no pyarrow or Numba.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload.benchmark import BenchOptions, parse_workers, run_benchmark
from fastload.benchmark.collate import PackingCollate
from fastload.benchmark.proc import PeakMemory, machine_info, process_tree, tree_cpu_seconds, tree_memory_bytes
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


def test_a_mixture_is_measured_with_both_loaders_and_counts_every_source(tmp_path, capsys):
    from fastload.cli import main

    rng = np.random.default_rng(1)
    write_documents(tmp_path / "a", distinct_documents(rng, 60, 50), block_rows=10)
    write_documents(tmp_path / "b", distinct_documents(rng, 40, 50), block_rows=10)
    mix = fastload.Mixture({"a": (tmp_path / "a", 3), "b": (tmp_path / "b", 1)})
    report = run_benchmark(mix, BenchOptions(workers=(0,), **TINY))
    assert report.dataset.startswith("mixture a=") and report.num_documents == 100 and report.num_blocks == 10
    assert [r.loader for r in report.results] == ["naive", "fastload"]
    for r in report.results:
        assert r.num_tokens == 5 * 4 * 32 and r.tokens_per_s > 0 and r.io_amplification > 0
    argv = ["bench", "--mix", f"a={tmp_path / 'a'}:3", f"b={tmp_path / 'b'}:1", "--workers", "0", "--batch-size", "4", "--seq-len", "32",
            "--steps", "3", "--repeats", "1", "--warmup", "0", "--eos-id", "0"]
    assert main(argv) == 0
    assert "fastload " in capsys.readouterr().out


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


# ---------------------------------------------------------------- what bench/ shares: proc and collate


def _modules_loaded_by(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code`."""
    probe = code + "\nimport sys; print(','.join(m for m in ('pyarrow', 'numba', 'numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return [m for m in out.strip().split(",") if m]


def test_importing_the_measurement_module_loads_none_of_pyarrow_numba_numpy_or_torch():
    assert _modules_loaded_by("from fastload.benchmark.proc import PeakMemory, machine_info; PeakMemory().sample(); machine_info()") == []


def test_importing_fastload_and_fastload_benchmark_loads_none_of_pyarrow_numba_numpy_or_torch():
    assert _modules_loaded_by("import fastload, fastload.benchmark") == []


def test_the_packing_collate_loads_numpy_only():
    assert _modules_loaded_by("import fastload.benchmark.collate") == ["numpy"]


def test_every_public_name_is_imported_on_first_use_and_listed():
    import fastload.benchmark

    for module in (fastload, fastload.benchmark):
        for name in module.__all__:
            assert getattr(module, name) is not None
        assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'Nonexistent'"):
        getattr(fastload, "Nonexistent")


def test_fastload_convert_stays_the_function_when_its_subpackage_is_imported_first():
    code = "import fastload\nfrom fastload.convert import pipeline\nimport fastload.convert\nprint(callable(fastload.convert))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout

    assert out.strip() == "True"


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc")
def test_tree_memory_sums_this_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in process_tree(os.getpid())
        tree, alone = tree_memory_bytes(), tree_memory_bytes(child.pid)
        assert tree.rss > alone.rss > 0 and tree.pss > alone.pss > 0
        peak = PeakMemory()
        assert peak.sample(force=True) >= 0 and peak.rss_mb >= alone.rss / 2**20
    finally:
        child.kill()
        child.wait()
    assert machine_info()["cpus"] >= 1


@pytest.mark.skipif(not os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat"), reason="needs Linux /proc with schedstat")
def test_tree_cpu_counts_a_busy_child_in_nanoseconds_not_clock_ticks():
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(60)"])
    try:
        before = time.monotonic()
        while tree_cpu_seconds(child.pid) < 0.3 and time.monotonic() < before + 30:  # busy for 0.3 s of CPU, then asleep
            time.sleep(0.05)
        first, second = tree_cpu_seconds(child.pid), tree_cpu_seconds(child.pid)
        assert 0.3 <= first < 1.5 and 0 <= second - first < 0.002  # asleep: nothing more between two readings
        ticks = first * 100  # /proc/<pid>/stat would give whole 10 ms ticks; a nanosecond count is one by a 1e-7 chance
        assert abs(ticks - round(ticks)) > 1e-6
        assert tree_cpu_seconds() >= first  # this process's tree holds the child
    finally:
        child.kill()
        child.wait()


def test_the_packing_collate_cuts_documents_into_rows_and_carries_the_rest_over():
    documents = [np.arange(10 * i, 10 * i + 10, dtype=np.int64) for i in range(5)]  # 10 tokens each
    collate = PackingCollate(documents, batch_size=2, row_tokens=6, seed=0)  # 12 tokens a batch

    rows = collate([documents[0], documents[1]])  # 20 tokens: 12 in the batch, 8 carried over
    assert rows.shape == (2, 6) and rows.flatten().tolist() == list(range(12))
    rows = collate([])  # the carry-over (12..19) is short of 12: topped up with one random document
    assert rows.flatten().tolist()[:8] == list(range(12, 20))

    split = PackingCollate(documents, batch_size=2, row_tokens=6, seed=0, split_labels=True)([documents[2], documents[3]])
    assert split["input_ids"].shape == split["labels"].shape == (2, 5)
    assert split["labels"][:, :-1].tolist() == split["input_ids"][:, 1:].tolist()
