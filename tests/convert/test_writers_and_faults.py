"""Conversions that meet each other, a full disk, Ctrl-C, or a cold Numba cache: nothing lost, nothing silently wrong.

Concurrency and Ctrl-C are tested with real processes, ordered by lines on
their pipes (a child says "paused" and waits for a line on stdin), never by
sleeps; every wait has a timeout.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload import ConfigError, ConvertError, Dataset
from fastload.demo import demo_corpus_path
from fastload.format import Column, DatasetWriter, Schema

LOCK_FILE = ".fastload-lock"  # named in SPEC.md
TIMEOUT_S = 120  # for a child to reach a point or to exit: generous, machines are slow and shared

# A conversion of 4 batches of 100 rows tagged TAG that stops before batch PAUSE_AT,
# says "paused" and waits for a line on stdin; with FAIL it then raises instead of finishing.
_PAUSING_CONVERT = """
import sys
import pyarrow as pa
import fastload

out, tag, pause_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema = pa.schema([("tag", pa.string()), ("i", pa.int64())])

def batches():
    for k in range(4):
        if k == pause_at:
            print("paused", flush=True)
            sys.stdin.readline()
            if "--fail" in sys.argv:
                raise RuntimeError("the source failed")
        yield pa.record_batch([pa.array([tag] * 100), pa.array(range(100 * k, 100 * k + 100))], schema=schema)

reader = pa.RecordBatchReader.from_batches(schema, batches())
fastload.convert(reader, out, workers=1, block_rows=50, quiet=True, overwrite="--overwrite" in sys.argv)
"""

_CLI = "import sys; from fastload.cli import main; sys.exit(main())"


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _Child:
    """A running Python child that prints "paused" when it has reached the point the test waits for."""

    def __init__(self, code: str, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_until_paused(self) -> None:
        line = _readline(self.process.stdout, TIMEOUT_S)
        if line.strip() != "paused":
            out, err = self.process.communicate(timeout=TIMEOUT_S)
            pytest.fail(f"the child did not pause: {line!r}{out!r}\n{err}")

    def wait_for_first_shard(self, out: Path) -> None:
        """Until the paused child's writer thread has created its first shard: blocks are written on a
        thread of their own (`format.write_behind`), which may not have reached the disk when it pauses."""
        deadline = time.monotonic() + TIMEOUT_S
        while ".tmp-shard-00000-0000.arrow" not in _listing(out):
            if time.monotonic() > deadline:
                pytest.fail(f"the paused child wrote no shard in {TIMEOUT_S} s: {_listing(out)}")
            time.sleep(0.01)

    def resume(self) -> subprocess.CompletedProcess:
        out, err = self.process.communicate("\n", timeout=TIMEOUT_S)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=TIMEOUT_S)


def _readline(stream, timeout_s: float) -> str:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise TimeoutError(f"nothing on the child's stdout within {timeout_s} s")
    return stream.readline()


def _cli_convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CLI, "convert", *args], capture_output=True, text=True, timeout=TIMEOUT_S)


# -- two conversions, one folder ------------------------------------------------------------


def test_a_second_conversion_into_a_folder_being_written_is_refused_naming_the_pid(tmp_path):
    out = tmp_path / "out"
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"tag": "B", "i": i}) + "\n" for i in range(50)))
    first = _Child(_PAUSING_CONVERT, str(out), "A", "2")  # has written part of its first shard
    try:
        first.wait_until_paused()
        first.wait_for_first_shard(out)
        during = _listing(out)
        for flags in ([], ["--overwrite"]):
            second = _cli_convert(str(other), "-o", str(out), *flags)
            assert second.returncode == 1, second
            assert f"another conversion (pid {first.process.pid}) is writing to the output folder '{out}'" in second.stderr
            assert "Traceback" not in second.stderr
            assert _listing(out) == during  # the refused runs deleted nothing, not even with --overwrite
        done = first.resume()
    finally:
        first.process.kill()
    assert done.returncode == 0, done.stderr
    rows = list(Dataset(out))
    assert [r["tag"] for r in rows] == ["A"] * 400 and [r["i"] for r in rows] == list(range(400))
    assert fastload.verify_dataset(out) == []
    assert _listing(out) == ["index.json", "shard-00000-0000.arrow"]  # the lock file is gone too


def test_a_failed_conversion_removes_only_what_it_created_and_never_a_file_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "out"  # does not exist yet: the conversion creates it
    child = _Child(_PAUSING_CONVERT, str(out), "A", "0", "--fail")
    try:
        child.wait_until_paused()
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text("someone else's")
        done = child.resume()
    finally:
        child.process.kill()
    assert done.returncode == 1 and "the source failed" in done.stderr
    assert _listing(out) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "someone else's"


def test_a_conversion_killed_while_holding_the_folder_does_not_block_the_next_one(tmp_path):
    out = tmp_path / "out"
    child = _Child(_PAUSING_CONVERT, str(out), "A", "2")
    child.wait_until_paused()
    child.wait_for_first_shard(out)
    child.kill()  # SIGKILL: no cleanup ran
    assert LOCK_FILE in _listing(out) and ".tmp-shard-00000-0000.arrow" in _listing(out)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(5)))
    fastload.convert(source, out, overwrite=True, quiet=True)
    assert [r["text"] for r in Dataset(out)] == [f"t{i}" for i in range(5)]
    assert _listing(out) == ["index.json", "shard-00000-0000.arrow"]


def test_a_lock_file_left_behind_does_not_make_a_folder_count_as_not_empty(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("12345\n")  # left by a killed conversion; nobody holds its lock
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "x"}) + "\n")
    fastload.convert(source, out, quiet=True)
    assert _listing(out) == ["index.json", "shard-00000-0000.arrow"]


def test_two_writers_in_one_process_exclude_each_other_and_the_first_refusal_leaves_its_folder(tmp_path):
    schema = Schema((Column("v", "scalar", "int64"),))
    writer = DatasetWriter(tmp_path / "ds", schema)
    with pytest.raises(ConfigError, match=rf"another conversion \(pid {os.getpid()}\) is writing"):
        DatasetWriter(tmp_path / "ds", schema, overwrite=True)
    writer.write(pa.record_batch([pa.array(np.arange(10))], names=["v"]))
    writer.close()
    assert [r["v"] for r in Dataset(tmp_path / "ds")] == list(range(10))
    with DatasetWriter(tmp_path / "ds", schema, overwrite=True) as again:  # released: the next writer may start
        again.write(pa.record_batch([pa.array(np.arange(3))], names=["v"]))
    assert len(Dataset(tmp_path / "ds")) == 3


def test_discard_removes_the_files_and_folders_it_made_and_nothing_else(tmp_path):
    from fastload.format.output import OutputFolder

    output = OutputFolder(tmp_path / "a" / "b")
    output.create(".tmp-shard-00000.arrow").write_bytes(b"x")
    output.discard()
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        OutputFolder(tmp_path / "kept")
    assert _listing(tmp_path / "kept") == ["old.txt"]


# -- a full disk --------------------------------------------------------------------------------


class _SmallDisk:
    """Python `open` for writing under `folder` behaves as on a disk with `free` bytes left: past them, OSError(code)."""

    def __init__(self, monkeypatch, folder: Path, free: int, code: int = errno.ENOSPC):
        self.folder, self.free, self.code = folder.resolve(), free, code
        self.real_open = builtins.open
        monkeypatch.setattr(builtins, "open", self.open)

    def open(self, file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and "w" in mode and Path(file).resolve().is_relative_to(self.folder):
            return io.BufferedWriter(_FullRaw(self, self.real_open(file, mode, buffering=0)))
        return self.real_open(file, mode, *args, **kwargs)


class _FullRaw(io.RawIOBase):
    def __init__(self, disk: _SmallDisk, raw):
        self.disk, self.raw = disk, raw

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = min(len(data), self.disk.free)
        if n == 0:
            raise OSError(self.disk.code, os.strerror(self.disk.code))
        self.disk.free -= n
        return self.raw.write(memoryview(data)[:n])

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()
        super().close()


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"hello world {i}", "i": i}) + "\n" for i in range(20_000)))
    return path


def test_a_full_disk_is_a_convert_error_saying_so_and_leaves_no_file_behind(tmp_path, monkeypatch, rows_file):
    out = tmp_path / "out"
    _SmallDisk(monkeypatch, tmp_path, free=100_000)  # runs out inside a shard; its footer cannot be written either
    with pytest.raises(ConvertError) as caught:
        fastload.convert(rows_file, out, block_bytes=16 << 10, quiet=True)
    message = str(caught.value)
    assert message.startswith(
        f"the disk is full (No space left on device) while writing '{out / '.tmp-shard-00000-0000.arrow'}', after writing "
        "100,000 bytes in 1 shard file(s); every file this conversion wrote there was removed, so no partial dataset is left."
    )
    assert "Free space on that disk, or choose an output folder on another one" in message
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert not out.exists()  # it made the folder, so it removed it


def test_a_disk_that_fills_while_writing_the_index_keeps_the_old_dataset(tmp_path, monkeypatch, rows_file):
    out = tmp_path / "out"
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"text": "old", "i": 0}) + "\n")
    fastload.convert(old, out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fastload.convert(rows_file, tmp_path / "probe", quiet=True)
    shard_bytes = (tmp_path / "probe" / "shard-00000-0000.arrow").stat().st_size
    _SmallDisk(monkeypatch, out, free=shard_bytes + 100)  # the new shard fits; its index does not
    with pytest.raises(ConvertError, match=r"the disk is full .* while writing '.*\.tmp-index\.json'.*the dataset that was in the folder before is untouched"):
        fastload.convert(rows_file, out, overwrite=True, quiet=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [r["text"] for r in Dataset(out)] == ["old"]


def test_any_write_failure_is_a_convert_error_naming_it(tmp_path, monkeypatch, rows_file):
    _SmallDisk(monkeypatch, tmp_path, free=50_000, code=errno.EIO)
    with pytest.raises(ConvertError, match=r"writing failed \(Input/output error\) while writing .*Check the disk"):
        fastload.convert(rows_file, tmp_path / "out", block_bytes=16 << 10, quiet=True)
    assert not (tmp_path / "out").exists()


def _open_files_removed(folder: Path) -> list[str]:
    """Files in `folder` this process still holds open though they were removed (their disk space is not freed)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used
            continue
        if target.startswith(str(folder)) and target.endswith(" (deleted)"):
            held.append(target)
    return held


def test_a_shard_whose_fsync_fails_on_the_syncing_thread_is_named_and_let_go_of(tmp_path, monkeypatch, rows_file):
    out = tmp_path / "out"
    real_fsync = os.fsync
    first = ".tmp-shard-00000-0000.arrow"

    def fsync(fd):  # the disk refuses shard 0's data when it is finally synced (NFS, thin volumes, quotas do)
        if os.readlink(f"/proc/self/fd/{fd}").endswith(first):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ConvertError) as caught:
        fastload.convert(rows_file, out, block_bytes=16 << 10, shard_bytes=64 << 10, quiet=True)
    assert f"while writing '{out / first}'" in str(caught.value)  # not the shard being written when it surfaced
    assert not out.exists()
    assert _open_files_removed(out) == []  # while the error lives, a removed shard must not keep its space


# -- Ctrl-C -------------------------------------------------------------------------------------

# A byte-level stand-in for a tokenizer that spends 2 s per MB of text asleep, as a compiled
# kernel would busy a core: a conversion stuck in it must still stop promptly on SIGINT.
_SLOW_TOKENIZER_CONVERT = """
import sys, time
import numpy as np, pyarrow.compute as pc
import fastload

class SlowBytes:
    vocab_size, fingerprint, eos_id, bos_id = 256, "slow-bytes", None, None
    busy = False

    def encode_arrow(self, arr):
        lengths = pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        if offsets[-1] > 100_000 and not SlowBytes.busy:
            SlowBytes.busy = True
            print("paused", flush=True)  # the workers are inside the tokenizer now
        time.sleep(offsets[-1] * 2e-6)
        return np.zeros(offsets[-1], np.uint32), offsets

try:
    fastload.convert(sys.argv[1], sys.argv[2], tokenizer=SlowBytes(), workers=2, quiet=True)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


@pytest.fixture(scope="module")
def big_text_file(tmp_path_factory) -> Path:
    """~50 MB of JSON Lines (the demo corpus, 8 times): several 8 MiB chunks, seconds of tokenizing."""
    path = tmp_path_factory.mktemp("sigint") / "big.jsonl"
    corpus = gzip.decompress(demo_corpus_path().read_bytes())
    with open(path, "wb") as f:
        for _ in range(8):
            f.write(corpus)
    return path


def _interrupt(process: subprocess.Popen) -> tuple[float, str]:
    started = time.perf_counter()
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    return time.perf_counter() - started, err


def test_sigint_stops_work_inside_the_tokenizer_promptly_and_removes_everything(tmp_path, big_text_file):
    out = tmp_path / "out"
    child = _Child(_SLOW_TOKENIZER_CONVERT, str(big_text_file), str(out))
    child.wait_until_paused()  # two workers hold 8 MiB chunks: 16 s of tokenizing each, had they to finish
    seconds, err = _interrupt(child.process)
    print(f"\nstopped {seconds:.2f} s after SIGINT (slow tokenizer)")
    assert child.process.returncode == 130, err
    assert seconds < 10, f"took {seconds:.1f} s to stop after SIGINT"
    assert not out.exists()


def test_sigint_to_the_cli_mid_conversion_exits_130_with_one_line_and_leaves_nothing(tmp_path, big_text_file):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", _CLI, "convert", str(big_text_file), "-o", str(out), "--tokenizer", "default", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 5 * TIMEOUT_S  # a cold Numba cache compiles the tokenizer first
    while not (out / ".tmp-shard-00000-0000.arrow").exists():  # blocks are being written: mid-run
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the conversion never started writing: {process.communicate()}")
        time.sleep(0.01)
    seconds, err = _interrupt(process)
    print(f"\nstopped {seconds:.2f} s after SIGINT (fastload convert --tokenizer default)")
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["fastload convert: interrupted"]
    assert seconds < 10, f"took {seconds:.1f} s to stop after SIGINT"
    assert not out.exists()


def test_tokenizing_in_slices_gives_exactly_the_ids_of_one_call(tmp_path):
    from fastload.convert.threads import SlicedTokenizer
    from fastload.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("default")
    texts = ["", None, "a", "héllo wörld " * 50, "漢字" * 3, None, "x" * 1000, "end."]
    arr = pa.array(texts, pa.string())
    checks = []
    sliced = SlicedTokenizer(tokenizer, lambda: checks.append(1), slice_bytes=64)
    ids, offsets = sliced.encode_arrow(arr)
    expected_ids, expected_offsets = tokenizer.encode_arrow(arr)
    assert np.array_equal(ids, expected_ids) and np.array_equal(offsets, expected_offsets)
    assert len(checks) >= 3  # it did work in slices, checking before each
    assert sliced.vocab_size == tokenizer.vocab_size


def test_ordered_threads_stop_running_work_at_its_next_check_and_never_start_the_rest():
    import threading

    from fastload.convert.threads import OrderedThreads

    threads = OrderedThreads(2, depth=8)
    started: list[int] = []
    both_running = threading.Barrier(3)

    def work(i: int) -> int:
        started.append(i)
        if i < 2:
            both_running.wait(TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            threads.check()
            time.sleep(0.001)
        return i

    def items():
        yield from range(4)
        both_running.wait(TIMEOUT_S)
        raise KeyboardInterrupt  # as Ctrl-C arrives while the main thread reads input

    begun = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with threads:
            list(threads.map(work, items()))
    assert time.perf_counter() - begun < 10
    assert sorted(started) == [0, 1]


# -- the first conversion's MB/s ------------------------------------------------------------------


class _CompilingTokenizer:
    """Byte ids; the first call takes `compile_s` longer, as Numba compiling the kernels would."""

    vocab_size, fingerprint, eos_id, bos_id = 256, "compiling-bytes", None, None

    def __init__(self, compile_s: float):
        self.compile_s, self.calls = compile_s, 0

    def encode_arrow(self, arr):
        import pyarrow.compute as pc

        self.calls += 1
        if self.calls == 1:
            time.sleep(self.compile_s)
        lengths = pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return np.zeros(offsets[-1], np.uint32), offsets


def test_kernel_compilation_is_kept_out_of_the_throughput_and_shown_apart(tmp_path, rows_file):
    tokenizer = _CompilingTokenizer(compile_s=1.0)
    begun = time.perf_counter()
    result = fastload.convert(rows_file, tmp_path / "out", tokenizer=tokenizer, quiet=True)
    wall_s = time.perf_counter() - begun
    assert result.warmup_seconds >= 1.0
    assert result.seconds + result.warmup_seconds <= wall_s  # the MB/s figure divides by time without compiling
    summary = str(result)
    assert f"+ {result.warmup_seconds:,.2f} s before that to compile fastload's kernels" in summary
    assert "not counted in MB/s" in summary
    assert "compile" not in str(fastload.convert(rows_file, tmp_path / "plain", quiet=True))
