"""Worker processes of a loader over object storage. obstore's runtime does not survive fork() (a forked
child's requests hang), so the main process reads s3:// through boto3 and its workers still fork; where
the main process did start obstore, workers are spawned, and a plain forked child gets an error, not a hang."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest

import fastload
from fastload.errors import StoreError
from fastload.store import open_store
from fastload.store import object_store
from fastload.workers.iterator import _default_context

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")


def _array_rows(loader) -> list[float]:
    return np.sort(np.concatenate([batch["x"].numpy() for batch in loader])).tolist()


def test_after_s3_requests_the_workers_still_fork_and_read_the_url(tmp_path, moto_endpoint):
    url = f"s3://{moto_endpoint.bucket}/arrays"
    fastload.convert([{"x": float(i), "label": i % 3} for i in range(200)], url, block_rows=20, quiet=True)
    arrays = fastload.ArrayDataset(fastload.Dataset(url, cache_dir=tmp_path / "cache"))
    assert not object_store.runtime_started(), "the main process reads s3:// through boto3"
    assert _default_context().get_start_method() == multiprocessing.get_start_method()
    loader = fastload.DataLoader(arrays, batch_size=20, num_workers=2, timeout=60)  # a hang fails the test, not the suite
    assert _array_rows(loader) == [float(i) for i in range(200)]


def test_once_obstore_ran_here_workers_are_spawned_and_a_plain_fork_gets_an_error_not_a_hang(tmp_path, moto_endpoint):
    url = f"s3://{moto_endpoint.bucket}/arrays"
    fastload.convert([{"x": float(i), "label": i % 3} for i in range(100)], url, block_rows=20, quiet=True)
    # storage_options that only obstore understands send this process's requests through obstore
    options = {"endpoint": moto_endpoint.url, "virtual_hosted_style_request": False}
    dataset = fastload.Dataset(url, cache_dir=tmp_path / "cache", storage_options=options)
    dataset.read_block(0)
    assert object_store.runtime_started()
    if multiprocessing.get_start_method() == "fork":
        assert _default_context().get_start_method() == "spawn"
    loader = fastload.DataLoader(fastload.ArrayDataset(dataset), batch_size=20, num_workers=2, timeout=120)
    assert _array_rows(loader) == [float(i) for i in range(100)]

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what reading did, and leave without running pytest's cleanup
        signal.alarm(30)  # a hang ends the child, and the test fails on its empty answer
        try:
            open_store(url, options).get("index.json")
            answer = b"read"
        except StoreError as exc:
            answer = str(exc).encode()
        os.write(write, answer[:4000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "forked from process" in answer and "'spawn'" in answer
