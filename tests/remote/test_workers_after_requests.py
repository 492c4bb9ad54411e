"""Worker processes of a loader over object storage: never forked from a process that made obstore requests
(a forked child's requests hang: tokio's threads do not survive fork), spawned instead, with the environment as it is now."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

import fastload
from fastload.store.object_store import used_in_this_process
from fastload.workers.iterator import _default_context

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")


def test_after_a_request_the_default_start_method_fork_becomes_spawn_and_workers_read_the_url(tmp_path, moto_endpoint):
    url = f"s3://{moto_endpoint.bucket}/arrays"
    fastload.convert([{"x": float(i), "label": i % 3} for i in range(200)], url, block_rows=20, quiet=True)
    assert used_in_this_process()
    if multiprocessing.get_start_method() == "fork":
        assert _default_context().get_start_method() == "spawn"
    arrays = fastload.ArrayDataset(fastload.Dataset(url, cache_dir=tmp_path / "cache"))
    loader = fastload.DataLoader(arrays, batch_size=20, num_workers=2, timeout=60)  # a hang fails the test, not the suite
    seen = np.sort(np.concatenate([batch["x"].numpy() for batch in loader]))
    assert seen.tolist() == [float(i) for i in range(200)]


def test_a_child_forked_after_requests_gets_an_error_saying_to_spawn_not_a_hang(moto_endpoint):
    import os
    import signal

    from fastload.errors import StoreError
    from fastload.store import open_store

    store = open_store(f"s3://{moto_endpoint.bucket}/forked")
    store.put("a", b"bytes")
    assert bytes(store.get("a")) == b"bytes"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what reading did, and leave without running pytest's cleanup
        signal.alarm(30)  # a hang ends the child, and the test fails on its empty answer
        try:
            open_store(f"s3://{moto_endpoint.bucket}/forked").get("a")
            answer = b"read"
        except StoreError as exc:
            answer = str(exc).encode()
        os.write(write, answer[:4000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "forked from one that had made object-store requests" in answer and "'spawn'" in answer
