"""Parallel conversion is deterministic; a killed conversion never looks complete."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastload
from fastload import Dataset, FormatError
from fastload.demo import demo_corpus_path


def _folder_bytes(path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_one_and_two_workers_write_identical_datasets(tmp_path, compression):
    options = dict(block_bytes=64 << 10, shard_bytes=256 << 10, compression=compression, quiet=True)
    fastload.convert(demo_corpus_path(), tmp_path / "w1", workers=1, **options)
    fastload.convert(demo_corpus_path(), tmp_path / "w2", workers=2, **options)
    first, second = _folder_bytes(tmp_path / "w1"), _folder_bytes(tmp_path / "w2")
    assert len(first) > 3  # several shards, so the test means something
    assert first == second


_CONVERT = """
import sys, fastload
fastload.convert(sys.argv[1], sys.argv[2], workers=2, block_bytes=16 << 10, shard_bytes=256 << 10, overwrite=True, quiet=True)
"""


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("kill") / "in.jsonl"
    words = np.array(["alpha", "beta", "gamma", "δέλτα", "эпсилон", "ζ", "eta"])
    with open(path, "w") as f:
        for i in range(60_000):
            f.write(json.dumps({"text": " ".join(rng.choice(words, 30)), "i": i}, ensure_ascii=False) + "\n")
    return path


def test_sigkill_at_random_moments_never_leaves_a_folder_that_opens_as_complete(tmp_path, big_input):
    rng = np.random.default_rng(1)
    reference = tmp_path / "reference"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _CONVERT, str(big_input), str(reference)], check=True)
    full_seconds = time.perf_counter() - started
    expected_rows = len(Dataset(reference))
    outcomes = {"complete": 0, "incomplete": 0}
    out = tmp_path / "out"
    for trial in range(8):
        process = subprocess.Popen([sys.executable, "-c", _CONVERT, str(big_input), str(out)])
        time.sleep(float(rng.uniform(0.05, 1.0)) * full_seconds)
        process.send_signal(signal.SIGKILL)
        process.wait()
        try:
            ds = Dataset(out)
        except FormatError:
            outcomes["incomplete"] += 1
            continue
        # It opened: then it must be the whole dataset, intact.
        assert len(ds) == expected_rows
        assert fastload.verify_dataset(out) == []
        outcomes["complete"] += 1
    assert sum(outcomes.values()) == 8
