"""`fastload convert --engine ray`: the local engine's bytes, whatever the number of tasks, their order or retries."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload import Dataset
from fastload.convert.partition_work import resolve_tokenizer
from fastload.errors import ConvertError

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'fastload[ray]'")

# Small shards and partitions, so that the inputs below make several partitions, and files are cut inside.
OPTIONS = dict(block_bytes=8 << 10, shard_bytes=32 << 10, partition_bytes=96 << 10, quiet=True)
WORDS = np.array(["alpha", "beta", "gamma", "δέλτα", "эпсилон", "漢字", "eta"])


@pytest.fixture(scope="module")
def ray_cluster():
    # 4 logical CPUs (Ray's scheduling unit, not cores) so that 4 one-CPU tasks can run at once.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the crashing tokenizer below, without importing tests/
    yield
    ray.shutdown()


def _write_jsonl(path: Path, num_rows: int, *, seed: int, bad_lines: tuple[int, ...] = ()) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(num_rows):
            if i in bad_lines:
                f.write("{not json\n")
            else:
                f.write(json.dumps({"text": " ".join(rng.choice(WORDS, int(rng.integers(5, 60)))), "i": seed * 100_000 + i, "x": float(i) / 7}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    _write_jsonl(folder / "a.jsonl", 1500, seed=1)  # ~250 KB: cut into pieces of three partitions
    _write_jsonl(folder / "b.jsonl", 40, seed=2)  # small files packed with their neighbours
    _write_jsonl(folder / "c.jsonl", 60, seed=3)
    _write_jsonl(folder / "d.jsonl", 900, seed=4)
    return folder


def _folder_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _local(inputs: Path, out: Path, **options) -> dict[str, bytes]:
    fastload.convert(inputs, out, engine="local", workers=1, **OPTIONS, **options)
    return _folder_bytes(out)


@pytest.mark.parametrize("tokenizer", [None, "default"])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_the_ray_engine_writes_the_local_engines_bytes_for_any_number_of_tasks(ray_cluster, inputs, tmp_path, workers, tokenizer):
    local = _local(inputs, tmp_path / "local", tokenizer=tokenizer)
    # workers=N: N threads and N Ray CPUs per task, so 4/N tasks of the 4-CPU cluster run at once.
    result = fastload.convert(inputs, tmp_path / "ray", engine="ray", workers=workers, tokenizer=tokenizer, **OPTIONS)
    assert result.num_partitions >= 4 and len(result.index.shards) >= 8  # several partitions, several shards each
    assert _folder_bytes(tmp_path / "ray") == local  # index.json and every shard, byte for byte
    assert result.peak_memory_bytes > 0 and "peak memory per task" in str(result)


def test_a_bad_line_in_a_partition_that_starts_inside_a_file_is_reported_with_its_file_and_line(ray_cluster, tmp_path):
    bad = _write_jsonl(tmp_path / "bad.jsonl", 1500, seed=5, bad_lines=(1234,))  # line 1235, in the file's third partition
    for engine in ("local", "ray"):
        with pytest.raises(ConvertError, match=r"bad\.jsonl, line 1235: invalid JSON") as raised:
            fastload.convert(bad, tmp_path / engine, engine=engine, workers=1, **OPTIONS)
        assert not (tmp_path / engine).exists()  # every file of the run removed, the folder it made too
    assert raised.value is not None


def test_skipped_bad_lines_are_counted_across_tasks_and_the_bytes_still_match(ray_cluster, tmp_path):
    bad = _write_jsonl(tmp_path / "bad.jsonl", 1500, seed=6, bad_lines=(3, 700, 701, 1400))
    local = fastload.convert(bad, tmp_path / "local", engine="local", on_error="skip", **OPTIONS)
    remote = fastload.convert(bad, tmp_path / "ray", engine="ray", workers=1, on_error="skip", **OPTIONS)
    assert local.num_partitions >= 3
    assert local.num_skipped_rows == remote.num_skipped_rows == remote.index.num_skipped_rows == 4
    assert _folder_bytes(tmp_path / "ray") == _folder_bytes(tmp_path / "local")


class CrashOnceTokenizer:
    """The bytes tokenizer, except that the first process to meet `marker` records the output folder and dies (os._exit)."""

    def __init__(self, flag: Path, marker: str, out: Path):
        self.flag, self.marker, self.out = str(flag), marker, str(out)

    def encode_arrow(self, text):
        if any(self.marker in (value or "") for value in text.to_pylist()):
            try:
                fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:  # a retry, or the local reference run
                pass
            else:
                os.write(fd, json.dumps(sorted(os.listdir(self.out))).encode())
                os.close(fd)
                os._exit(1)  # as a lost node or an out-of-memory kill: no cleanup, no exception
        return resolve_tokenizer("bytes").encode_arrow(text)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("flag", "marker", "out"):
            raise AttributeError(name)
        return getattr(resolve_tokenizer("bytes"), name)


def test_a_task_killed_mid_write_is_retried_and_the_dataset_has_no_duplicate_missing_or_stray_file(ray_cluster, tmp_path):
    # Partitions of 12 MiB, each read as two chunks (sources.CHUNK_BYTES is 8 MiB): the marker sits in
    # partition 1's second chunk, so when that attempt dies its first chunk is already in its shards.
    rng = np.random.default_rng(7)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS, 300)), "i": i}, ensure_ascii=False) + "\n" for i in range(12_000)]
    starts = np.cumsum([0] + [len(line.encode()) for line in lines])
    marked = int(np.searchsorted(starts, 21 << 20))  # 9 MiB into partition 1 (12-24 MiB): its second chunk
    lines[marked] = json.dumps({"text": "CRASH HERE", "i": marked}) + "\n"
    source = tmp_path / "in.jsonl"
    source.write_text("".join(lines), encoding="utf-8")
    options = dict(block_bytes=256 << 10, shard_bytes=1 << 20, partition_bytes=12 << 20, quiet=True)
    flag, out = tmp_path / "crashed", tmp_path / "ray"
    result = fastload.convert(source, out, engine="ray", workers=1, tokenizer=CrashOnceTokenizer(flag, "CRASH HERE", out), **options)
    at_crash = json.loads(flag.read_text())
    assert any(name.startswith(".tmp-shard-00001-") for name in at_crash)  # the killed attempt had written shards of its own
    reference = tmp_path / "local"
    fastload.convert(source, reference, engine="local", workers=1, tokenizer=CrashOnceTokenizer(flag, "CRASH HERE", reference), **options)
    assert result.num_partitions >= 2 and _folder_bytes(out) == _folder_bytes(reference)  # no stray temporary, no duplicate rows
    assert sorted(os.listdir(out)) == sorted(["index.json", *(s.file for s in result.index.shards)])
    assert len(Dataset(out)) == 12_000


def test_a_killed_conversion_is_resumed_on_ray_from_the_partitions_it_finished(ray_cluster, tmp_path):
    from tests.convert.test_resume import OPTIONS as RESUME_OPTIONS, _killed_run

    source = _write_jsonl(tmp_path / "in.jsonl", 2000, seed=9)
    out = tmp_path / "out"
    _killed_run(source, out)  # a local run killed as its partition 3 started
    kept = (out / ".tmp-shard-00002-0000.arrow").stat().st_mtime_ns
    result = fastload.convert(source, out, engine="ray", resume=True, **RESUME_OPTIONS)
    assert result.num_partitions > 4 and (out / "shard-00002-0000.arrow").stat().st_mtime_ns == kept
    fastload.convert(source, tmp_path / "fresh", **RESUME_OPTIONS)
    assert _folder_bytes(out) == _folder_bytes(tmp_path / "fresh")


def _sorted_rows(rows) -> list[dict]:
    plain = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()} for row in rows]
    return sorted(plain, key=lambda row: row["i"])


def test_a_datasink_writes_a_ray_data_pipelines_rows_as_fastload_convert_does(ray_cluster, inputs, tmp_path):
    import fastload.ray

    rows = [json.loads(line) for line in (inputs / "d.jsonl").read_text(encoding="utf-8").splitlines()]
    kept = [row for row in rows if row["i"] % 3]
    pipeline = ray.data.from_items(rows).filter(lambda row: row["i"] % 3 != 0)  # the user's own filtering
    sink = fastload.ray.Datasink(tmp_path / "sink", tokenizer="default", block_bytes=8 << 10, shard_bytes=32 << 10)
    pipeline.write_datasink(sink)
    reference = fastload.convert(kept, tmp_path / "reference", tokenizer="default", block_bytes=8 << 10, shard_bytes=32 << 10, quiet=True)
    written = Dataset(tmp_path / "sink")
    assert written.schema == reference.index.schema and len(written) == len(kept)
    assert _sorted_rows(written) == _sorted_rows(Dataset(tmp_path / "reference"))
    assert sink.index is not None and sink.index.num_rows == len(kept)
    assert sorted(os.listdir(tmp_path / "sink")) == sorted(["index.json", *(s.file for s in sink.index.shards)])


def test_a_datasource_reads_a_fastload_dataset_into_ray_data_block_by_block(ray_cluster, inputs, tmp_path):
    import fastload.ray

    result = fastload.convert(inputs / "a.jsonl", tmp_path / "ds", tokenizer="default", keep_text=True, **OPTIONS)
    read = ray.data.read_datasource(fastload.ray.Datasource(tmp_path / "ds"))
    assert read.count() == result.num_rows
    assert _sorted_rows(read.take_all()) == _sorted_rows(Dataset(tmp_path / "ds"))
