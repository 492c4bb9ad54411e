"""Partitions: the input cut as a function of the files and options only; the local engine converts them one by one."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload import Dataset
from fastload.convert.partitions import partition_of_shard, partition_shard_name, plan_partitions
from fastload.convert.sources import find_inputs
from fastload.errors import ConfigError


def _lines(path: Path, num_rows: int, start: int = 0) -> Path:
    path.write_text("".join(json.dumps({"text": "w " * (i % 13), "i": start + i}) + "\n" for i in range(num_rows)))
    return path


def _rows(path: Path) -> list[dict]:
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()} for row in Dataset(path)]


def test_files_are_cut_at_line_ends_and_small_files_share_a_partition(tmp_path):
    big = _lines(tmp_path / "a.jsonl", 2000)
    _lines(tmp_path / "b.jsonl", 5)
    _lines(tmp_path / "c.jsonl", 5)
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as f:
        f.write(big.read_text())
    files = find_inputs([tmp_path])
    partitions = plan_partitions(files, partition_bytes=10_000, text_lines=False)
    pieces = [piece for partition in partitions for piece in partition.pieces]
    assert [p.partition_id for p in partitions] == list(range(len(partitions)))
    data = big.read_bytes()
    cuts = [piece for piece in pieces if piece.file.path == big]
    assert len(cuts) == len(data) // 10_000 + 1 or len(cuts) == len(data) // 10_000
    assert cuts[0].start == 0 and cuts[-1].end is None
    for before, after in zip(cuts, cuts[1:]):
        assert before.end == after.start and data[after.start - 1 : after.start] == b"\n"  # whole lines on each side
        assert before.num_bytes >= 1
    assert all(10_000 <= p.num_bytes < 10_000 + 100 for p in partitions[:3])  # full partitions: the target plus the rest of a line
    small = [p for p in partitions if any(piece.file.path.name == "b.jsonl" for piece in p.pieces)]
    assert len(small) == 1 and {piece.file.path.name for piece in small[0].pieces} >= {"a.jsonl", "b.jsonl", "c.jsonl"}
    compressed = [piece for piece in pieces if piece.file.path.name == "d.jsonl.gz"]
    assert compressed == [compressed[0]] and (compressed[0].start, compressed[0].end) == (0, None)  # never cut
    assert plan_partitions(files, partition_bytes=10_000, text_lines=False) == partitions  # a pure function


def test_shard_names_say_their_partition():
    assert partition_shard_name(7, 3) == "shard-00007-0003.arrow"
    assert partition_of_shard("shard-00007-0003.arrow") == partition_of_shard("promoted-shard-00007-0003.arrow") == 7
    assert partition_of_shard("shard-00007.arrow") is None and partition_of_shard("index.json") is None


def test_many_partitions_hold_the_rows_of_one_and_reconcile_columns_across_them(tmp_path):
    rows = [{"i": i, "x": i, "late": None} for i in range(3000)]
    rows += [{"i": 3000 + i, "x": i + 0.5, "late": f"v{i}"} for i in range(500)]  # x widens, `late` gets a type, both in later partitions
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = dict(block_bytes=4 << 10, shard_bytes=8 << 10, quiet=True, workers=2)
    many = fastload.convert(source, tmp_path / "many", partition_bytes=16 << 10, **options)
    one = fastload.convert(source, tmp_path / "one", partition_bytes=1 << 30, **options)
    assert many.num_partitions >= 4 and one.num_partitions == 1
    assert many.index.schema == one.index.schema  # x float64, late text, in input order
    assert _rows(tmp_path / "many") == _rows(tmp_path / "one")
    for name in ("i", "x", "late"):  # statistics folded across partitions agree with one pass (floats to rounding)
        a, b = many.index.stats[name], one.index.stats[name]
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(["index.json", *(s.file for s in many.index.shards)])


def test_the_ray_engine_refuses_in_memory_sources_and_says_what_to_use(tmp_path):
    with pytest.raises(ConfigError, match="ray engine converts files.*Datasink"):
        fastload.convert([{"text": "a"}], tmp_path / "out", engine="ray")
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_the_ray_engine_says_how_to_install_it(tmp_path, monkeypatch):
    source = _lines(tmp_path / "in.jsonl", 10)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'fastload\[ray\]'"):
        fastload.convert(source, tmp_path / "out", engine="ray", quiet=True)
    assert not (tmp_path / "out").exists()


def _varied_lines(path: Path, num_rows: int) -> Path:
    """Rows of random lengths, a third of them full of escapes (more JSON bytes per Arrow byte), mixed all along the file."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(num_rows):
        text = " ".join("w" * int(n) for n in rng.integers(1, 12, size=int(rng.integers(5, 60))))
        if i % 3 == 0:
            text = text.replace("w", '"\\\n', 2)
        rows.append(json.dumps({"text": text, "i": i}) + "\n")
    path.write_text("".join(rows))
    return path


def test_every_shard_but_the_datasets_last_is_within_ten_percent_of_shard_bytes_even_at_partition_ends(tmp_path):
    source = _varied_lines(tmp_path / "a.jsonl", 12_000)
    shard_bytes = 64 << 10
    # partitions of 7.5 shards of input: full shards would leave a small one at each partition's end
    options = dict(block_bytes=1 << 10, shard_bytes=shard_bytes, partition_bytes=int(7.5 * shard_bytes), quiet=True)
    one = fastload.convert(source, tmp_path / "one", workers=1, **options)
    assert one.num_partitions >= 3
    sizes = [s.num_bytes / shard_bytes for s in one.index.shards]
    assert all(0.9 <= size <= 1.1 for size in sizes[:-1]), sizes
    two = fastload.convert(source, tmp_path / "two", workers=2, **options)
    for shard in one.index.shards:  # balanced by the rows and their input sizes only: the same bytes for any workers
        assert (tmp_path / "one" / shard.file).read_bytes() == (tmp_path / "two" / shard.file).read_bytes()


@pytest.mark.parametrize("window, max_rounds", [(4096, 32), (512, 32), (512, 1)])
def test_objects_are_planned_in_rounds_of_parallel_reads_into_the_partitions_one_read_per_cut_gives(tmp_path, monkeypatch, window, max_rounds):
    """`line_ends.plan_in_rounds`: the cuts of objects in a store, found by fetching windows around guessed
    cuts in parallel, are exactly those of the chained walk: with windows wide enough for the guesses (in
    far fewer rounds than cuts), with lines longer than a window, and when the rounds run out (max_rounds=1)
    and the rest is looked up one read at a time."""
    from fastload.convert import line_ends
    from fastload.convert.input_files import InputFile
    from fastload.convert.partitions import line_end_at_or_after
    from fastload.store import LocalStore

    monkeypatch.setattr(line_ends, "WINDOW_BYTES", window)
    monkeypatch.setattr(line_ends, "MAX_ROUNDS", max_rounds)
    rng = np.random.default_rng(5)
    for k, lines in enumerate([400, 3, 900, 1]):
        lengths = rng.choice([0, 10, 60, 200, 700, 1500], size=lines, p=[0.05, 0.3, 0.4, 0.15, 0.07, 0.03])
        (tmp_path / f"f{k}.jsonl").write_bytes(b"".join(b"x" * int(n) + b"\n" for n in lengths))
    (tmp_path / "g.jsonl.gz").write_bytes(gzip.compress(b"{}\n" * 100))
    files = find_inputs([tmp_path])
    store = LocalStore(tmp_path)
    objects = [InputFile(str(f.path), f.fmt, f.compression, f.name, f.num_bytes, store.describe(f.name).version, store) for f in files]
    reads = []
    real = line_ends._Lookups.fetch
    monkeypatch.setattr(line_ends._Lookups, "fetch", lambda self, wanted: reads.append(len(wanted)) or real(self, wanted))

    def coordinates(partitions):
        return [[(piece.file.name, piece.start, piece.end) for piece in partition.pieces] for partition in partitions]

    for partition_bytes in (2000, 7000, 50_000):
        one_read_per_cut = plan_partitions(files, partition_bytes=partition_bytes, text_lines=False, line_end=line_end_at_or_after)
        reads.clear()
        in_rounds = line_ends.plan_in_rounds(objects, partition_bytes=partition_bytes, text_lines=False)
        assert coordinates(in_rounds) == coordinates(one_read_per_cut)
        cuts = sum(1 for partition in one_read_per_cut for piece in partition.pieces if piece.end is not None)
        assert len(reads) <= max_rounds
        if window == 4096 and cuts > 8:
            assert len(reads) <= cuts / 4, (partition_bytes, cuts, reads)
