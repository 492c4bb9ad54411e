"""Failures inside and around workers: clear errors, no hangs, nothing left behind."""

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import fastload
from tests.loader.conftest import Shapes


class Failing(torch.utils.data.Dataset):
    def __init__(self, bad_index: int, action: str):
        self.bad_index, self.action = bad_index, action

    def __len__(self):
        return 40

    def __getitem__(self, i):
        if i == self.bad_index:
            if self.action == "raise":
                raise KeyError(f"no such item {i}")
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.action == "sleep":
                time.sleep(30)
        return torch.tensor(i)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _shm_entries() -> set:
    """Named shared memory that a DataLoader could have left: torch's segments, or anything of ours.

    (Other programs on the machine create /dev/shm entries too, e.g. multiprocessing's
    semaphores; fastload creates no named shared memory at all.)
    """
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if name.startswith("torch_") or "fastload" in name}


def test_an_exception_in_getitem_is_raised_in_the_main_process_with_type_worker_and_traceback():
    loader = fastload.DataLoader(Failing(13, "raise"), batch_size=4, num_workers=2)
    with pytest.raises(KeyError) as error:
        list(b.clone() for b in loader)
    text = str(error.value)
    assert "no such item 13" in text and "in DataLoader worker process" in text and "Original Traceback" in text
    assert "while loading batch 3 (indices [12, 13, 14, 15])" in text
    assert "__getitem__" in text


def test_a_worker_killed_by_sigkill_is_a_clear_error_within_seconds():
    loader = fastload.DataLoader(Failing(17, "kill"), batch_size=4, num_workers=2)
    started = time.monotonic()
    iterator = iter(loader)
    with pytest.raises(RuntimeError, match=r"DataLoader worker \d \(pid \d+\) was killed by SIGKILL"):
        for _ in iterator:
            pass
    assert time.monotonic() - started < 5
    assert not any(p.is_alive() for p in iterator._workers)


def test_timeout_raises_like_torch_for_a_slow_worker():
    loader = fastload.DataLoader(Failing(5, "sleep"), batch_size=4, num_workers=2, timeout=1)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 1 seconds"):
        for _ in loader:
            pass
    assert time.monotonic() - started < 10
    del loader
    gc.collect()


def test_keyboard_interrupt_mid_epoch_leaves_no_worker_behind():
    loader = fastload.DataLoader(Shapes(200), batch_size=4, num_workers=2)
    iterator = iter(loader)
    workers = list(iterator._workers)
    with pytest.raises(KeyboardInterrupt):
        for i, _ in enumerate(iterator):
            if i == 3:
                raise KeyboardInterrupt
    del iterator, _
    gc.collect()
    deadline = time.monotonic() + 5
    while any(p.is_alive() for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in workers)


def test_two_hundred_loaders_created_and_dropped_leak_nothing():
    gc.collect()  # loaders of earlier tests
    fds, shm = _fd_count(), _shm_entries()
    for i in range(200):
        loader = fastload.DataLoader(Shapes(16), batch_size=4, num_workers=2, persistent_workers=i % 2 == 0)
        for j, batch in enumerate(loader):
            if j == i % 3:
                break
        del loader, batch
    gc.collect()
    deadline = time.monotonic() + 5
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()
    assert _fd_count() <= fds + 2
    assert _shm_entries() == shm


def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, time, torch, fastload
        class Slow(torch.utils.data.Dataset):
            def __len__(self): return 1000
            def __getitem__(self, i):
                time.sleep(0.05)
                return i
        loader = fastload.DataLoader(Slow(), batch_size=2, num_workers=2)
        it = iter(loader)
        next(it)
        print(" ".join(str(p.pid) for p in it._workers), flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker_pids = [int(p) for p in process.stdout.readline().split()]
    assert len(worker_pids) == 2
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5
    alive = worker_pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in worker_pids if _alive(pid)]
        time.sleep(0.05)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_error_in_worker_init_fn_is_raised_at_iteration_start():
    def init(worker_id):
        raise ValueError(f"bad init {worker_id}")

    loader = fastload.DataLoader(Shapes(8), batch_size=2, num_workers=2, worker_init_fn=init)
    with pytest.raises(ValueError, match="bad init"):
        iter(loader)
    assert not multiprocessing.active_children()


def test_workers_started_from_a_thread_that_has_ended_keep_serving():
    import threading

    loader = fastload.DataLoader(Shapes(32), batch_size=4, num_workers=2, persistent_workers=True)
    first = []
    thread = threading.Thread(target=lambda: first.extend(b["label"].clone() for b in loader))
    thread.start()
    thread.join()
    second = [b["label"].clone() for b in loader]  # the same workers, after their starting thread ended
    assert len(first) == len(second) == 8
