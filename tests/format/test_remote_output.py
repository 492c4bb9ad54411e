"""`ShardUploads` on interrupt: nothing it uploaded outlives its `discard`.

The store is a local folder (`LocalStore`) whose uploads wait for the test's word.
"""

from __future__ import annotations

import signal
import threading

import pytest

from fastload.format.remote_output import RemoteOutput, ShardUploads
from fastload.store import LocalStore


def test_an_upload_under_way_when_ctrl_c_stops_the_wait_for_it_is_deleted_after_it_lands(tmp_path):
    store = LocalStore(tmp_path / "bucket")
    release, real_put = threading.Event(), store.put

    def slow_put(name, data):  # a 128 MiB shard on its way
        release.wait(10)
        real_put(name, data)

    store.put = slow_put
    uploads = ShardUploads(store, staging_dir=tmp_path)
    uploads.create(".tmp-shard-00000.arrow").write_bytes(b"a finished shard")
    uploads.shard_finished(".tmp-shard-00000.arrow", "shard-00000.arrow")
    main = threading.get_ident()
    interrupt = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
    interrupt.start()
    with pytest.raises(KeyboardInterrupt):
        uploads.finish()  # (commit waits for its uploads the same way)
    interrupt.join()
    threading.Timer(0.3, release.set).start()  # the upload lands while discard cleans up
    uploads.discard()
    assert store.list() == []


def test_a_commit_interrupted_once_index_json_reached_the_store_leaves_no_index_naming_deleted_shards(tmp_path):
    (tmp_path / "bucket").mkdir()
    store = LocalStore(tmp_path / "bucket")
    real_put = store.put

    def put(name, data):  # the server stored index.json, and Ctrl-C came before its answer did
        real_put(name, data)
        if name == "index.json":
            raise KeyboardInterrupt

    store.put = put
    output = RemoteOutput(store, staging_dir=tmp_path)
    output.create(".tmp-shard-00000.arrow").write_bytes(b"a finished shard")
    output.shard_finished(".tmp-shard-00000.arrow", "shard-00000.arrow")
    with pytest.raises(KeyboardInterrupt):
        output.commit([(".tmp-shard-00000.arrow", "shard-00000.arrow")], b"{}")
    output.discard()  # what the conversion does on any error
    assert store.list() == []  # not an index.json whose shards discard just deleted
