import signal
import threading

import pyarrow as pa
import pytest

from fastload.format import Column, DatasetWriter, Schema, WriteOptions
from fastload.format import writer as writer_module
from fastload.format.write_behind import WriteBehind


def test_calls_run_in_submission_order_on_one_thread_other_than_the_callers():
    stage = WriteBehind(depth=3)
    seen = []
    for i in range(50):
        stage.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    stage.drain()
    stage.close()
    assert [i for i, _ in seen] == list(range(50))
    names = {name for _, name in seen}
    assert len(names) == 1 and threading.current_thread().name not in names


def test_a_failure_is_raised_on_the_callers_thread_and_later_calls_are_skipped():
    stage = WriteBehind(depth=1)
    ran = []

    def fail():
        raise OSError(28, "No space left on device")

    stage.submit(ran.append, 1)
    stage.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        for i in range(2, 10):  # the failure surfaces at the latest when the queue is full
            stage.submit(ran.append, i)
        stage.drain()
    stage.close()
    assert ran == [1]


def test_close_lets_the_running_call_end_skips_the_queued_ones_and_does_not_raise():
    stage = WriteBehind(depth=4)
    started, release = threading.Event(), threading.Event()
    done = []

    def running():
        started.set()
        release.wait(10)
        done.append("running")

    stage.submit(running)
    stage.submit(done.append, "queued")
    stage.submit(lambda: 1 / 0)
    started.wait(10)
    threading.Timer(0.3, release.set).start()  # while close waits for the running call
    stage.close()  # a writer giving up has its own error to report, and nothing queued is wanted any more
    assert done == ["running"]
    assert not any(t.name.startswith("fastload-write") for t in threading.enumerate())


def test_an_interrupt_while_the_caller_waits_for_the_stage_reaches_the_caller():
    stage = WriteBehind(depth=1)
    release = threading.Event()
    stage.submit(release.wait, 10)
    main = threading.get_ident()

    def interrupt():
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, delivered to the main thread waiting in drain
        release.wait(5)  # (with the interrupt lost, drain would return once this lets the call end)
        release.set()

    helper = threading.Timer(0.2, interrupt)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        stage.drain()
    release.set()
    helper.join()
    stage.close()


def test_a_writer_given_up_while_blocks_wait_writes_none_of_them_and_stops_its_threads(tmp_path, monkeypatch):
    written, started, release = [], threading.Event(), threading.Event()
    real_write = writer_module._ShardFile.write

    def slow_write(self, batch):
        written.append(batch.num_rows)
        started.set()
        release.wait(10)
        return real_write(self, batch)

    monkeypatch.setattr(writer_module._ShardFile, "write", slow_write)
    schema = Schema((Column("i", "scalar", "int64"),))
    writer = DatasetWriter(tmp_path / "out", schema, options=WriteOptions(block_rows=10))
    writer.write(pa.record_batch([pa.array(range(100), pa.int64())], schema=schema.arrow_schema()))  # 10 blocks queued
    started.wait(10)
    threading.Timer(0.3, release.set).start()
    writer.abort()  # a bad input line, Ctrl-C: the caller gives up while 9 blocks wait to be written
    assert written == [10]
    assert not any(t.name.startswith(("fastload-write", "fastload-sync")) for t in threading.enumerate())
    assert not (tmp_path / "out").exists()


def test_a_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth"):
        WriteBehind(depth=0)


def test_a_writer_given_up_while_shards_wait_for_their_fsync_closes_their_files_without_syncing_them(tmp_path, monkeypatch):
    """`abort` skips the queued fsyncs of finished shards and closes those files itself: none is left open for
    the garbage collector to fsync later, into a folder already removed."""
    synced, started, release = [], threading.Event(), threading.Event()
    real_sync = writer_module._ShardFile.sync

    def slow_sync(self):
        synced.append(self.path.name)
        started.set()
        release.wait(10)
        return real_sync(self)

    monkeypatch.setattr(writer_module._ShardFile, "sync", slow_sync)
    schema = Schema((Column("i", "scalar", "int64"),))
    writer = DatasetWriter(tmp_path / "out", schema, options=WriteOptions(block_rows=10, shard_bytes=1))  # a shard per block
    writer.write(pa.record_batch([pa.array(range(20), pa.int64())], schema=schema.arrow_schema()))
    started.wait(10)
    writer._behind.drain()  # two blocks written, two shards finished: the first one's sync runs, the second's waits
    files = list(writer._sealed_files)
    threading.Timer(0.3, release.set).start()
    writer.abort()
    assert len(files) == 2 and len(synced) == 1
    assert all(f.closed for f in files)
    assert not (tmp_path / "out").exists()
