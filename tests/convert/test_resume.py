"""A conversion killed mid-way is resumed: partitions it finished, whose shards still validate by CRC-32, are kept."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastload
from fastload.errors import ConfigError

pipeline = importlib.import_module("fastload.convert.pipeline")

OPTIONS = dict(block_bytes=8 << 10, shard_bytes=32 << 10, partition_bytes=96 << 10, workers=1, quiet=True)

# Converts, and SIGKILLs itself as partition 3 starts: partitions 0-2 are finished, nothing is cleaned up.
_KILLED_AT_PARTITION_3 = """
import importlib, os, signal, sys, fastload
pipeline = importlib.import_module("fastload.convert.pipeline")
real = pipeline.convert_partition

def convert_partition(partition, job, **kwargs):
    if partition.partition_id == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(partition, job, **kwargs)

pipeline.convert_partition = convert_partition
fastload.convert(sys.argv[1], sys.argv[2], **{options})
"""


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i} " + "word " * (i % 40), "i": i}) + "\n" for i in range(6000)))
    return path


def _killed_run(source: Path, out: Path) -> None:
    script = _KILLED_AT_PARTITION_3.format(options=OPTIONS)
    done = subprocess.run([sys.executable, "-c", script, str(source), str(out)], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr


def _folder_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _counting(monkeypatch) -> list[int]:
    converted = []
    real = pipeline.convert_partition

    def convert_partition(partition, job, **kwargs):
        converted.append(partition.partition_id)
        return real(partition, job, **kwargs)

    monkeypatch.setattr(pipeline, "convert_partition", convert_partition)
    return converted


def test_a_resumed_conversion_skips_the_finished_partitions_and_writes_the_same_bytes(tmp_path, source, monkeypatch):
    out = tmp_path / "out"
    _killed_run(source, out)
    left = sorted(p.name for p in out.iterdir())
    assert ".tmp-fragment-00002.json" in left and ".tmp-shard-00002-0000.arrow" in left and "index.json" not in left
    with pytest.raises(ConfigError, match="did not finish; pass --resume"):
        fastload.convert(source, out, **OPTIONS)
    kept = (out / ".tmp-shard-00001-0000.arrow").stat().st_mtime_ns
    converted = _counting(monkeypatch)
    result = fastload.convert(source, out, resume=True, **OPTIONS)
    assert result.num_partitions > 4 and converted == list(range(3, result.num_partitions))
    assert (out / "shard-00001-0000.arrow").stat().st_mtime_ns == kept  # the very file the killed run wrote
    fresh = fastload.convert(source, tmp_path / "fresh", **OPTIONS)
    assert _folder_bytes(out) == _folder_bytes(tmp_path / "fresh")  # index.json and shards; no fragment file left
    assert fresh.index.to_json() == result.index.to_json()


def test_a_partition_whose_shard_fails_its_crc_is_converted_again(tmp_path, source, monkeypatch):
    out = tmp_path / "out"
    _killed_run(source, out)
    damaged = out / ".tmp-shard-00001-0000.arrow"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 1  # same size, different CRC-32
    damaged.write_bytes(bytes(data))
    converted = _counting(monkeypatch)
    result = fastload.convert(source, out, resume=True, **OPTIONS)
    assert converted == [1, *range(3, result.num_partitions)]
    fastload.convert(source, tmp_path / "fresh", **OPTIONS)
    assert _folder_bytes(out) == _folder_bytes(tmp_path / "fresh")


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_a_fragment_file_cut_short_is_converted_again(tmp_path, source, monkeypatch, cut):
    """Fragment files are not fsynced (`record_fragment`): after a power loss one may be empty or cut
    anywhere, and its partition is then converted again, never trusted."""
    out = tmp_path / "out"
    _killed_run(source, out)
    fragment = out / ".tmp-fragment-00001.json"
    data = fragment.read_bytes()
    fragment.write_bytes(b"" if cut == "empty" else data[: len(data) // 2])
    converted = _counting(monkeypatch)
    result = fastload.convert(source, out, resume=True, **OPTIONS)
    assert converted == [1, *range(3, result.num_partitions)]
    fastload.convert(source, tmp_path / "fresh", **OPTIONS)
    assert _folder_bytes(out) == _folder_bytes(tmp_path / "fresh")


def test_resuming_with_other_options_converts_everything_again(tmp_path, source, monkeypatch):
    out = tmp_path / "out"
    _killed_run(source, out)
    converted = _counting(monkeypatch)
    other = dict(OPTIONS, block_bytes=4 << 10)  # another layout: the finished partitions' shards do not fit it
    result = fastload.convert(source, out, resume=True, **other)
    assert converted == list(range(result.num_partitions))
    fastload.convert(source, tmp_path / "fresh", **other)
    assert _folder_bytes(out) == _folder_bytes(tmp_path / "fresh")  # the old temporaries are gone too
