"""The main process's side of the worker protocol: `PoolIterator`.

It is torch's base iterator (so sampler handling, seeds and `len()` are
torch's; reached through `IteratorBase` in `fastload/torch_private.py`) with
torch's multiprocessing replaced by fastload's:
it starts the workers, gives each task a free slot of the buffer pool,
collects finished batches — reading only the pipe of the worker that holds
the next task — and hands out tensors that view their slot. Everything it
sends or receives follows NOTE [fastload worker protocol] in `protocol.py`.
It needs from its loader only what torch's iterator needs, plus the
loader's `_buffer_pool(pin=...)` (the pool outlives an epoch) and
`_skip_batches` (batches of indices to skip when resuming).
"""

from __future__ import annotations

import errno
import itertools
import multiprocessing
import os
import select
import signal
import time
import warnings
from multiprocessing.connection import wait

import numpy as np
import torch

from fastload.errors import ConfigError
from fastload.pool import PAGE
from fastload.store.object_store import worker_start_method
from fastload.torch_private import DatasetKind, ExceptionWrapper, IteratorBase, is_default_collate, profiler_enabled
from fastload.workers import protocol
from fastload.workers.codec import decode_batch, slot_bytes_of
from fastload.workers.loop import worker_main

__all__ = ["PoolIterator", "Progress"]

TASK_GROUP = 4  # tasks a message carries for datasets that compute whole batches (`_group`)
SLOT_HEADROOM = 1.25  # slots are sized to the largest batch seen so far, plus this margin
EXTRA_SLOTS = 3  # beyond prefetch: the batch the loop variable holds, one more the user may keep, the one being handed over
LIVENESS_S = 0.5  # how long the main process waits before re-checking that workers are alive


class Progress:
    """Batches delivered in the current epoch; shared by a loader and its iterator.

    The loader cannot keep its iterator alive to ask it (that would keep
    workers running after a `break`), so the iterator counts here.
    """

    __slots__ = ("batches",)

    def __init__(self, batches: int = 0):
        self.batches = batches


class _WorkerDied(RuntimeError):
    pass


class PoolIterator(IteratorBase):
    """Multi-process iteration over the buffer pool. See NOTE [fastload worker protocol]."""

    _progress: Progress | None = None

    def __init__(self, loader):
        super().__init__(loader)
        resume = loader._resume_seeds
        if resume is not None:  # resuming an epoch whose workers were reused: see DataLoader._resumed_iterator
            self.base_seed = int(resume["base_seed"])
            torch.set_rng_state(resume["rng_state"])
            if resume.get("generator_state") is not None and loader.generator is not None:
                loader.generator.set_state(resume["generator_state"])
        self._prefetch_factor = loader.prefetch_factor
        self._in_order = loader.in_order
        # Datasets that compute whole batches (fastload's own) are cheap per batch, so the hand-off's
        # wake-ups dominate: their tasks go in groups, one message and one wake-up each way per group.
        self._group = TASK_GROUP if _computes_whole_batches(loader, self.auto_collation) else 1
        self._max_tasks = self._prefetch_factor * self.num_workers * self._group
        self._pool = loader._buffer_pool(pin=self.pin_memory and torch.cuda.is_available())
        self._pool.iterator_started()  # the pool stays open while this iterator runs, even if the loader dies
        self._warned_holding = False
        self._shutdown = False
        self._tasks: dict[int, tuple[int, tuple | None]] = {}  # task_id -> (worker_id, slot); worker SHARED: every worker
        self._workers: list = []
        self._shares = _shares(loader, self.dataset, self.num_workers) if self._group > 1 else None  # rows of a batch per worker
        if self._shares is not None:
            self._size_pool_for_shares(loader)  # before the workers fork: they inherit the kernels it loads
        self._start_workers(loader)
        self.new_epoch(loader, first=True)

    # -- workers ---------------------------------------------------------------

    def _start_workers(self, loader) -> None:
        context = loader.multiprocessing_context or _default_context()
        if isinstance(context, str):
            context = multiprocessing.get_context(context)
        uses_default = is_default_collate(loader.collate_fn)
        self._workers, self._conns, self._pollers = [], [], []
        self._last_described: list[tuple | None] = []  # per worker: (used, skeleton, leaves) of its last batch in a slot
        for worker_id in range(self.num_workers):
            parent, child = context.Pipe(duplex=True)
            config = protocol.WorkerConfig(
                worker_id=worker_id,
                num_workers=self.num_workers,
                dataset=self.dataset,
                dataset_kind=self.dataset_kind,
                auto_collation=self.auto_collation,
                collate_fn=loader.collate_fn,
                uses_default_collate=uses_default and self.auto_collation,
                drop_last=self.drop_last,
                base_seed=self.base_seed,
                worker_init_fn=loader.worker_init_fn,
                parent_pid=os.getpid(),
            )
            process = context.Process(target=worker_main, args=(config, child), daemon=True, name=f"fastload-worker-{worker_id}")
            process.start()
            child.close()
            self._workers.append(process)
            self._last_described.append(None)
            self._conns.append(parent)
            poller = select.poll()  # a registered poll object costs ~2 µs a call; Connection.poll ~30
            poller.register(parent.fileno(), select.POLLIN)
            self._pollers.append(poller)
        for worker_id in range(self.num_workers):
            message = self._receive_from(worker_id, timeout=None)
            if message[0] == protocol.ERROR:
                self._shutdown_workers()
                message[2].reraise()
            self._send_arena(worker_id)  # slots sized by an earlier epoch of this loader

    def _receive_from(self, worker_id: int, timeout: float | None):
        """The next message of one worker; raises if it dies or `timeout` passes first."""
        conn, process = self._conns[worker_id], self._workers[worker_id]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            budget = LIVENESS_S if deadline is None else max(0.0, min(LIVENESS_S, deadline - time.monotonic()))
            if self._pollers[worker_id].poll(budget * 1000):  # readable: a message, or EOF if the worker died
                try:
                    return protocol.receive(conn)
                except (EOFError, OSError):  # the worker died with its end of the pipe
                    self._raise_worker_died([worker_id])
            if not process.is_alive():
                self._raise_worker_died([worker_id])
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")

    def _raise_worker_died(self, worker_ids: list[int]) -> None:
        details = []
        for worker_id in worker_ids:
            process = self._workers[worker_id]
            process.join(timeout=0.1)
            code = process.exitcode
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                how = f"was killed by {name}" + (" (often the out-of-memory killer)" if -code == signal.SIGKILL else "")
            else:
                how = f"exited unexpectedly with code {code}"
            details.append(f"DataLoader worker {worker_id} (pid {process.pid}) {how}")
        self._shutdown_workers()
        raise _WorkerDied("; ".join(details) + ". See the worker's output above for its last error, if any.")

    # -- epochs ------------------------------------------------------------------

    def new_epoch(self, loader, *, first: bool) -> None:
        super().new_epoch(loader, first=first)
        if not first:
            self._drain()
            for conn in self._conns:
                if self.dataset_kind == DatasetKind.Iterable:
                    protocol.send(conn, (protocol.RESET,))
        self._send_idx = 0
        self._rcvd_idx = 0
        self._tasks = {}
        self._done: dict[int, object] = {}  # out-of-order arrivals, by task id
        self._active = [True] * self.num_workers
        self._next_worker = itertools.cycle(range(self.num_workers))
        self._sampler_done = False
        self._owed: dict[int, set[int]] = {}  # shared batch -> workers whose share has not come back
        self._share_descriptions: dict[int, tuple] = {}  # shared batch -> (used, skeleton, leaves), from worker 0
        self._share_errors: dict[int, object] = {}  # shared batch -> the first error of one of its shares
        # Batches per message: shared batches go to every worker, so a message carries as many as make
        # each worker's wake-ups per batch what they are for whole batches (1/TASK_GROUP), while two
        # messages still fit in flight. The epoch's first message carries one: the first batch does not
        # wait for a group's worth of work.
        self._per_message = self._group if self._shares is None else max(1, min(self._group * len(self._shares), self._max_tasks // 2))
        self._first_message = True
        for worker_id, conn in enumerate(self._conns):  # before the first task, so the workers fetch ahead from the start
            rows = self._shares[worker_id] if self._shares is not None and worker_id < len(self._shares) else None
            found = loader.read_order(rows=rows)
            if found is not None:
                protocol.send(conn, (protocol.EXPECT, *found))
        if loader._skip_batches:
            self.sampler_iter = itertools.islice(self.sampler_iter, loader._skip_batches, None)
        if self._shares is not None and not first:
            self._size_pool_for_shares(loader)
        for _ in range(self._max_tasks):
            if not self._dispatch():
                break

    def _size_pool_for_shares(self, loader) -> None:
        """Slots big enough for a whole batch before its shares go out: a share cannot bring a segment of
        its own. The dataset's arrays for no rows of a batch of this epoch give the size, reading no data
        (every batch of an epoch has the same arrays); computing them also loads the dataset's kernels,
        which workers forked after it share instead of each loading them again."""
        sampler = loader._index_sampler_object
        if len(sampler) == 0:
            return
        position = (sampler.epoch, sampler.samples_consumed)
        key = next(iter(sampler))  # a fresh iterator's first key; put back whatever it moved
        sampler.epoch, sampler.samples_consumed = position
        arrays = self.dataset.__fastload_batch__(key, np.empty, rows=(0, 0))
        self._grow_pool(slot_bytes_of(list(arrays.values())))

    def _drain(self) -> None:
        """Collect what the workers still owe from the previous epoch, and drop it."""
        while self._tasks:
            self._receive_any(block=True)
        self._done.clear()

    # -- hand-off ------------------------------------------------------------------

    def _dispatch(self, *, allow_dedicated: bool = False) -> bool:
        """Send the next task (or group of tasks) to a worker, if slots (or permission to go without) are free."""
        if self._sampler_done or not any(self._active):
            return False
        per_message = 1 if self._first_message else self._per_message
        if per_message > 1 and not allow_dedicated and len(self._tasks) + per_message > self._max_tasks:
            return False  # wait until a whole group fits
        self._first_message = False
        if self._shares is not None:
            return self._dispatch_shares(per_message, allow_dedicated=allow_dedicated)
        worker_id = next(self._next_worker)
        while not self._active[worker_id]:
            worker_id = next(self._next_worker)
        tasks = []
        while len(tasks) < per_message:
            slot = self._free_slot(allow_dedicated=allow_dedicated and not tasks)
            if slot is False:
                break
            try:
                index = self.next_index()
            except StopIteration:
                self._sampler_done = True
                if slot is not protocol.DEDICATED:
                    self._pool.release(slot)
                break
            tasks.append((self._send_idx, slot, index))
            self._tasks[self._send_idx] = (worker_id, slot)
            self._send_idx += 1
        if not tasks:
            return False
        message = (protocol.TASK, *tasks[0]) if len(tasks) == 1 else (protocol.TASKS, tasks)
        try:
            protocol.send(self._conns[worker_id], message)
        except OSError:
            self._raise_worker_died([worker_id])
        return True

    def _dispatch_shares(self, per_message: int, *, allow_dedicated: bool) -> bool:
        """Send the next group of batches to every worker, each its rows of them (shared batches).

        With every slot held by the training loop and waiting not allowed,
        the next batch goes whole to one worker in a segment of its own (see
        NOTE [fastload worker protocol]).
        """
        tasks = []
        while len(tasks) < per_message:
            slot = self._pool.acquire()
            if slot is None:
                if tasks or not allow_dedicated:
                    break
                self._warn_holding()
                return self._dispatch_whole()
            try:
                index = self.next_index()
            except StopIteration:
                self._sampler_done = True
                self._pool.release(slot)
                break
            tasks.append((self._send_idx, slot, index))
            self._tasks[self._send_idx] = (SHARED, slot)
            self._owed[self._send_idx] = set(range(len(self._shares)))
            self._send_idx += 1
        if not tasks:
            return False
        key_type = type(tasks[0][2])  # a namedtuple's keys travel as plain tuples (see SHARES)
        if hasattr(key_type, "_make") and all(type(index) is key_type for _, _, index in tasks):
            tasks = [(task_id, slot, tuple(index)) for task_id, slot, index in tasks]
        else:
            key_type = None
        for worker_id, (lo, hi) in enumerate(self._shares):
            try:
                protocol.send(self._conns[worker_id], (protocol.SHARES, lo, hi, worker_id == 0, key_type, tasks))
            except OSError:
                self._raise_worker_died([worker_id])
        return True

    def _dispatch_whole(self) -> bool:
        """One batch, whole, to the next worker, in a segment of its own."""
        try:
            index = self.next_index()
        except StopIteration:
            self._sampler_done = True
            return False
        worker_id = next(self._next_worker)
        self._tasks[self._send_idx] = (worker_id, protocol.DEDICATED)
        try:
            protocol.send(self._conns[worker_id], (protocol.TASK, self._send_idx, protocol.DEDICATED, index))
        except OSError:
            self._raise_worker_died([worker_id])
        self._send_idx += 1
        return True

    def _free_slot(self, *, allow_dedicated: bool):
        """A free slot; DEDICATED (the batch brings its own segment) before the pool is sized, or when
        every slot is held and waiting is not allowed; False when the task should wait."""
        if self._pool.current_arena is None:  # no batch seen yet, so no slot size: the first batches bring their own
            return protocol.DEDICATED
        slot = self._pool.acquire()
        if slot is not None:
            return slot
        if not allow_dedicated:  # every slot is in flight or held by the training loop
            return False
        self._warn_holding()
        return protocol.DEDICATED

    def _warn_holding(self) -> None:
        if not self._warned_holding:
            self._warned_holding = True
            warnings.warn(
                f"the training loop holds every one of this DataLoader's {self._max_tasks + EXTRA_SLOTS} shared-memory "
                "batch slots (batches are views of them, and a slot is reused only when its batch is freed); the "
                "workers waited, and now use slower one-off segments. Call .clone() on tensors you keep across "
                "steps, or raise prefetch_factor.",
                RuntimeWarning,
                stacklevel=4,
            )

    def _receive_any(self, *, block: bool, timeout: float | None = None) -> bool:
        """Handle one message from any worker; False if none came within the wait."""
        waits = [c for c in self._conns] + [p.sentinel for p in self._workers]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            budget = LIVENESS_S if deadline is None else max(0.0, min(LIVENESS_S, deadline - time.monotonic()))
            ready = wait(waits, budget if block else 0)
            conns = [c for c in ready if c in self._conns]
            if conns:
                worker_id = self._conns.index(conns[0])
                try:
                    message = protocol.receive(conns[0])
                except (EOFError, OSError):  # the worker died with its end of the pipe
                    self._raise_worker_died([worker_id])
                self._handle(worker_id, message)
                return True
            dead = [i for i, p in enumerate(self._workers) if not p.is_alive()]
            if dead:
                self._raise_worker_died(dead)
            if not block or (deadline is not None and time.monotonic() >= deadline):
                return False

    def _handle(self, worker_id: int, message) -> None:
        """Turn one worker message into finished tasks. See NOTE [fastload worker protocol]."""
        if type(message) is int:  # a batch in its slot, laid out as the worker's last described one
            self._finished(worker_id, message, self._last_described[worker_id])
            return
        kind, task_id = message[0], message[1]
        if kind == protocol.MANY:
            for reply in message[1]:
                self._handle(worker_id, reply)
            return
        if kind == protocol.BATCH and message[2] is not protocol.DEDICATED:
            self._last_described[worker_id] = description = message[3:6]  # (used, skeleton, leaves)
            self._finished(worker_id, task_id, description)
            return
        if task_id in self._owed:  # a share failed: its batch fails once every share is back
            self._share_errors.setdefault(task_id, message[2])
            self._finished(worker_id, task_id, None)
            return
        assigned = self._tasks.pop(task_id, (worker_id, protocol.DEDICATED))[1]
        if kind == protocol.BATCH:  # a batch in a segment of its own
            _, _, _, used, skeleton, leaves = message
            fd = self._receive_fd(worker_id, task_id)
            if assigned is not protocol.DEDICATED:
                self._pool.release(assigned)
            arena_id = self._pool.dedicated_arena(fd, used)
            self._done[task_id] = decode_batch(skeleton, leaves, self._pool.lease_buffer(arena_id, -1, used))
            self._grow_pool(used)
            return
        if assigned is not protocol.DEDICATED:
            self._pool.release(assigned)
        if kind == protocol.END:
            self._active[worker_id] = False  # its iterable is exhausted for this epoch
            self._done[task_id] = _SKIP
        elif kind == protocol.ERROR:
            self._done[task_id] = message[2]

    def _finished(self, worker_id: int, task_id: int, description: tuple | None) -> None:
        """A task done in its slot, `description` = (used, skeleton, leaves). A shared batch is done
        when every share is back (worker 0's describes it); only then is its slot released on an
        error, since until then some worker may still be writing into it."""
        owed = self._owed.get(task_id)
        if owed is not None:
            owed.discard(worker_id)
            if worker_id == 0 and description is not None:
                self._share_descriptions[task_id] = description
            if owed:
                return
            del self._owed[task_id]
            description = self._share_descriptions.pop(task_id, None)
            error = self._share_errors.pop(task_id, None)
            if error is not None:
                self._pool.release(self._tasks.pop(task_id)[1])
                self._done[task_id] = error
                return
        slot = self._tasks.pop(task_id)[1]
        used, skeleton, leaves = description
        self._done[task_id] = decode_batch(skeleton, leaves, self._pool.lease_buffer(slot[0], slot[1], used))

    def _receive_fd(self, worker_id: int, task_id: int) -> int:
        """The fd of a batch's own segment, which follows its BATCH message. See NOTE [fastload worker protocol].

        Receiving it takes a free descriptor in this process (two, briefly);
        with none left, Python's multiprocessing fails with an obscure
        "received 0 items of ancdata" (or EMFILE). The batches themselves hold
        none (see pool.py), so what fills the table is the rest of the process:
        say so, and what to do.
        """
        from multiprocessing.reduction import recv_handle

        try:
            return recv_handle(self._conns[worker_id])
        except RuntimeError as exc:  # "received 0 items of ancdata": the kernel dropped the fd, no room for it
            if "ancdata" not in str(exc):
                raise
            cause = exc
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            cause = exc
        open_files = _open_files()  # counted before shutting down closes the workers' pipes
        self._shutdown_workers()
        raise ConfigError(
            f"DataLoader worker {worker_id} handed over batch {task_id} in a shared-memory segment, but this process "
            f"could not receive the segment's file descriptor ({cause}): {open_files}. fastload's batches hold "
            "no descriptors, so files, sockets or other loaders of this process hold them. Close what is not "
            "needed, or raise the limit: `ulimit -n 65536` in the shell that starts training, or "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (65536, hard_limit)) before creating the DataLoader."
        ) from cause

    def _grow_pool(self, batch_bytes: int) -> None:
        """Size (or resize) the pool after a batch that needed its own segment."""
        if batch_bytes <= self._pool.largest_batch and self._pool.num_slots >= self._max_tasks + EXTRA_SLOTS:
            return
        self._pool.largest_batch = max(batch_bytes, self._pool.largest_batch)
        slot_bytes = int(self._pool.largest_batch * SLOT_HEADROOM) + PAGE
        self._pool.add_arena(self._max_tasks + EXTRA_SLOTS, slot_bytes)
        for worker_id in range(len(self._workers)):  # none yet when the slots are sized before the workers start
            self._send_arena(worker_id)

    def _send_arena(self, worker_id: int) -> None:
        """Give a worker the pool's current arena. See NOTE [fastload worker protocol]."""
        from multiprocessing.reduction import send_handle

        arena_id = self._pool.current_arena
        if arena_id is None or not self._workers[worker_id].is_alive():
            return
        arena = self._pool.arenas[arena_id]
        protocol.send(self._conns[worker_id], (protocol.ARENA, arena_id, self._pool.slot_bytes[arena_id], arena.num_bytes))
        send_handle(self._conns[worker_id], arena.fd, self._workers[worker_id].pid)

    def next_batch(self):
        while True:
            if self._rcvd_idx >= self._send_idx and not self._dispatch(allow_dedicated=True):
                if not self.persistent_workers:
                    self._shutdown_workers()
                raise StopIteration
            if self._in_order:
                while self._rcvd_idx not in self._done:
                    self._wait_for_result()
                data = self._done.pop(self._rcvd_idx)
            else:
                while not self._done:
                    self._wait_for_result()
                task_id = min(self._done)
                data = self._done.pop(task_id)
            self._rcvd_idx += 1
            self._dispatch()
            if data is _SKIP:
                continue
            if isinstance(data, ExceptionWrapper):
                data.reraise()
            return data

    def _wait_for_result(self) -> None:
        if not self._tasks:
            self._dispatch(allow_dedicated=True)
        timeout = self.timeout or None  # torch's 0 means no timeout
        expected = self._tasks.get(self._rcvd_idx) if self._in_order else None
        if expected is not None and expected[0] is SHARED:
            # Every worker owes a share of it: read the pipe of one that still does.
            worker_id = min(self._owed[self._rcvd_idx])
            self._handle(worker_id, self._receive_from(worker_id, timeout=timeout))
            return
        if expected is not None:
            # In order, the next batch can only come from the worker that has its task: read
            # that one pipe (a poll and a recv) instead of waiting on every pipe and sentinel.
            worker_id = expected[0]
            message = self._receive_from(worker_id, timeout=timeout)
            self._handle(worker_id, message)
            return
        if not self._receive_any(block=True, timeout=timeout):
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds")

    def __next__(self):
        # torch's __next__ without its per-batch record_function when no profiler listens (~15 µs).
        if profiler_enabled():
            data = super().__next__()
            if self._progress is not None:
                self._progress.batches += 1
            return data
        data = self.next_batch()
        self.num_yielded += 1
        if self._progress is not None:
            self._progress.batches += 1
        length = self.reported_len
        if length is not None and self.dataset_kind == DatasetKind.Iterable and self.num_yielded > length:
            warnings.warn(
                f"Length of IterableDataset {self.dataset} was reported to be {length} (when accessing "
                f"len(dataloader)), but {self.num_yielded} samples have been fetched. For multiprocessing data-loading, "
                "this could be caused by not properly configuring the IterableDataset replica at each worker.",
                stacklevel=2,
            )
        return data

    # -- shutdown --------------------------------------------------------------

    def _shutdown_workers(self) -> None:
        """Stop every worker and release the pool; safe to call twice. See NOTE [fastload worker protocol]."""
        if self._shutdown:
            return
        self._shutdown = True
        for conn in self._conns:
            try:
                protocol.send(conn, (protocol.STOP,))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for process in self._workers:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=1.0)
        for conn in self._conns:
            conn.close()
        for _, slot in self._tasks.values():  # tasks that never came back
            if slot is not protocol.DEDICATED:
                self._pool.release(slot)
        self._tasks.clear()
        self._pool.iterator_ended()

    def __del__(self):
        if not getattr(self, "_shutdown", True):
            try:
                self._shutdown_workers()
            except Exception:  # interpreter teardown: modules may already be gone
                pass


_SKIP = object()  # a task that produced no batch (an exhausted iterable worker)
SHARED = -1  # the worker of a task every worker has a share of


def _shares(loader, dataset, num_workers: int) -> list[tuple[int, int]] | None:
    """Rows [lo, hi) of each batch per worker when the workers compute batches together: the dataset
    writes any rows of a batch into it (`splits_rows`) and the sampler says where to cut
    (`worker_rows`, at partition boundaries: then each block is read by one worker). None otherwise,
    and when fewer than two workers would have rows."""
    sampler = loader._index_sampler_object
    if num_workers < 2 or not getattr(dataset, "splits_rows", False) or not callable(getattr(sampler, "worker_rows", None)):
        return None
    if not _takes_rows(dataset.__fastload_batch__):  # a subclass that overrides it the old way
        return None
    shares = [(lo, hi) for lo, hi in sampler.worker_rows(num_workers) if hi > lo]
    return shares if len(shares) > 1 else None


def _open_files() -> str:
    """How many descriptors this process has open, against its limit, in words."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        count = len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself opens
    except OSError as exc:
        if exc.errno == errno.EMFILE:  # not even one left to list them with
            return f"all {limit:,} files it may open (ulimit -n) are open"
        return f"it may open {limit:,} files (ulimit -n)"  # no /proc: not Linux
    return f"it has {count:,} files open and may open {limit:,} (ulimit -n)"


def _computes_whole_batches(loader, auto_collation: bool) -> bool:
    """A fastload dataset that writes whole batches itself (`__fastload_batch__`, the loader's default collate)."""
    from fastload.workers.collate import ComputedBatchCollate

    return not auto_collation and hasattr(loader.dataset, "__fastload_batch__") and isinstance(loader.collate_fn, ComputedBatchCollate)


def _takes_rows(method) -> bool:
    import inspect

    parameters = inspect.signature(method).parameters
    return "rows" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _default_context():
    """Python's default start method, except fork once this process has started obstore's runtime
    (it read gs:// or az://; s3:// goes through boto3 here): a forked child's requests would hang
    (see `store/object_store.py`), so workers are spawned, each a fresh interpreter. Not forkserver:
    its server keeps the environment it started with, and a worker must see this process's
    credentials and endpoint as they are now."""
    return multiprocessing.get_context(worker_start_method())
