"""`ShardUploads` on interrupt: nothing it uploaded outlives its `discard`.

The store is a local folder (`LocalStore`) whose uploads wait for the test's word.
"""

from __future__ import annotations

import signal
import threading

import pytest

from fastload.format.remote_output import ShardUploads
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
