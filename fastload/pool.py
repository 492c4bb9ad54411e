"""The buffer pool: shared-memory slots that workers fill and the trainer reads in place.

    main process                                   worker k
    ───────────                                    ────────
    BufferPool: arenas of equal slots  ──fd──►     maps the same arenas (SharedArena.attach)
    lease(slot) ─► tensors that view the slot      writes a batch into the slot (SlotWriter)
    last tensor dies ─► slot back to the free list

Memory comes from `memfd_create`: anonymous shared memory with no name in
`/dev/shm`, so nothing can leak after a crash or a SIGKILL — the kernel frees
it when the last process holding the fd or a mapping goes away. Where
memfd is unavailable (not Linux), an unlinked temporary file is used instead,
with a warning. Only file descriptors and (arena, slot, offset, dtype,
shape) handles cross processes (see the protocol NOTE in `workers/protocol.py`).

A mapping holds no file descriptor (`_map_shared`; Python's `mmap.mmap` would
keep a duplicate of the fd open as long as the mapping lives). An arena keeps
its fd only while something still has to be sent: the pool's arenas, which
workers attach to, and a worker's one-batch segment until it is handed over.
So batches the training loop keeps cost memory but no descriptors: a loop
that keeps thousands of them (past the pool, each in a one-batch segment of
its own) does not run into the open-files limit (`ulimit -n`, often 1024).

A slot is *leased* with each batch: every tensor handed to the user views a
ctypes buffer over the slot, and a weak reference to that buffer, with a
callback, returns the slot when the last tensor, view or slice of the batch
is gone. So a slot
is never refilled under a live tensor. When the pool is pinned (CUDA and
`pin_memory=True`), a released slot is reused only after the CUDA work queued
on the current stream at release time has finished, so an asynchronous
`.to("cuda", non_blocking=True)` from the slot is never overwritten mid-copy.
(The event is recorded on the current stream of the thread that frees the
batch. A copy enqueued on another stream is not covered: keep the batch
alive until that stream has been synchronised — as with torch's own pinned
memory, whose caching allocator has the same rule for `record_stream`.)

Arenas are registered with CUDA once (`cudaHostRegister`), so copies from a
slot are true async DMA with no extra pinning copy.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import tempfile
import threading
import warnings
import weakref
from collections import deque

import numpy as np

from fastload.errors import ConfigError

__all__ = ["SharedArena", "BufferPool", "SlotWriter", "SlotFull", "available_memory_bytes"]

log = logging.getLogger("fastload.pool")

ALIGN = 64  # bytes; a cache line, and enough for every dtype and for vectorised kernels
PAGE = mmap.PAGESIZE


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where that does not exist."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_LIBC = None  # libc with mmap/munmap typed, loaded on first use (importing fastload loads nothing)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc():
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        _LIBC = libc
    return _LIBC


def _map_shared(fd: int, num_bytes: int):
    """The first `num_bytes` of `fd`, mapped shared and read-write, as a ctypes char array.

    The mapping is unmapped when the array and everything made from it (ctypes
    views, numpy arrays, tensors) are gone. It holds no file descriptor — the
    caller may close `fd` right away — where `mmap.mmap` keeps a duplicate of
    `fd` open for the mapping's whole life (until Python 3.13's
    `trackfd=False`), which made every batch the training loop kept cost
    descriptors.
    """
    libc = _libc()
    address = libc.mmap(None, num_bytes, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if address is None or address == _MAP_FAILED:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot map {num_bytes:,} bytes of shared memory: {os.strerror(code)}")
    memory = (ctypes.c_char * num_bytes).from_address(address)
    finalizer = weakref.finalize(memory, libc.munmap, address, num_bytes)
    finalizer.atexit = False  # at exit, live tensors may still view it; the kernel unmaps it anyway
    return memory


def _anonymous_fd(num_bytes: int, name: str) -> int:
    """A file descriptor of `num_bytes` of shared memory that has no name anywhere."""
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
        except OSError as exc:  # e.g. seccomp filters in some sandboxes
            log.debug("memfd_create failed (%s); using an unlinked temporary file", exc)
        else:
            os.ftruncate(fd, num_bytes)
            return fd
    warnings.warn(
        "memfd_create is not available here; fastload's buffer pool uses an unlinked temporary file instead "
        "(slower if the temporary folder is on disk)",
        RuntimeWarning,
        stacklevel=3,
    )
    fd, path = tempfile.mkstemp(prefix="fastload-pool-")
    os.unlink(path)  # no name left behind, whatever happens next
    os.ftruncate(fd, num_bytes)
    return fd


class SharedArena:
    """One block of shared memory (a memfd), mapped read-write in this process.

    `memory` is the mapping (see `_map_shared`); `fd` is kept open only with
    `keep_fd=True`, for an arena that is still to be sent to another process,
    and is -1 otherwise.
    """

    def __init__(self, fd: int, num_bytes: int, *, owner: bool, keep_fd: bool = True):
        self.num_bytes = num_bytes
        self.owner = owner
        try:
            self.memory = _map_shared(fd, num_bytes)
        finally:
            if not keep_fd:
                os.close(fd)
        self.fd = fd if keep_fd else -1
        self.address = ctypes.addressof(self.memory)
        self.pinned = False

    @classmethod
    def create(cls, num_bytes: int, *, name: str = "fastload-pool") -> "SharedArena":
        available = available_memory_bytes()
        if available is not None and num_bytes > available // 2:
            raise ConfigError(
                f"the loader's buffer pool needs {num_bytes / 2**20:,.0f} MiB of shared memory but only "
                f"{available / 2**20:,.0f} MiB of memory is available; lower prefetch_factor or num_workers, "
                "or the batch size"
            )
        return cls(_anonymous_fd(num_bytes, name), num_bytes, owner=True)

    @classmethod
    def attach(cls, fd: int, num_bytes: int) -> "SharedArena":
        """Map an arena another process made; `fd` is closed (the mapping does not need it)."""
        return cls(fd, num_bytes, owner=False, keep_fd=False)

    @classmethod
    def adopt(cls, fd: int, num_bytes: int) -> "SharedArena":
        """Take over a segment another process made and handed over with `fd`, which is closed."""
        return cls(fd, num_bytes, owner=True, keep_fd=False)

    def view(self, offset: int, num_bytes: int):
        """A ctypes char array over [offset, offset + num_bytes) that keeps the mapping alive."""
        return (ctypes.c_char * num_bytes).from_buffer(self.memory, offset)

    def pin(self) -> bool:
        """Register the arena as page-locked memory with CUDA (once). False if CUDA refuses."""
        import torch

        if self.pinned:
            return True
        result = torch.cuda.cudart().cudaHostRegister(self.address, self.num_bytes, 0)
        self.pinned = int(result) == 0
        if not self.pinned:
            warnings.warn(f"cudaHostRegister failed ({result}); batches stay in pageable memory", RuntimeWarning, stacklevel=2)
        return self.pinned

    def close(self) -> None:
        """Unpin, close the fd, and let go of the mapping: unmapped now, or when the last view of it dies."""
        if self.pinned:
            import torch

            torch.cuda.cudart().cudaHostUnregister(self.address)
            self.pinned = False
        self.memory = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SlotFull(Exception):
    """A batch does not fit in its slot; the worker falls back to a dedicated segment."""


class SlotWriter:
    """Bump allocator over one slot's bytes, used by a worker to place a batch's arrays."""

    def __init__(self, buffer, num_bytes: int):
        self.buffer = buffer  # an object with the buffer protocol over the slot
        self.num_bytes = num_bytes
        self.used = 0
        self.placed: dict[int, tuple] = {}  # id(array) -> (array, offset) of the arrays made here by `slot_array`

    def allocate(self, num_bytes: int) -> int:
        offset = _round_up(self.used, ALIGN)
        if offset + num_bytes > self.num_bytes:
            raise SlotFull(offset + num_bytes)
        self.used = offset + num_bytes
        return offset

    def array(self, shape: tuple, dtype: np.dtype) -> tuple[np.ndarray, int]:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        offset = self.allocate(count * dtype.itemsize)
        return np.frombuffer(self.buffer, dtype, count, offset).reshape(shape), offset


class BufferPool:
    """Fixed-size slots in shared arenas, leased to batches. Lives in the main process.

    `acquire()` hands out a free slot id (or None); `lease_buffer(...)`
    returns the ctypes buffer whose death releases the slot. Thread-safe:
    lease callbacks may run on any thread.
    """

    def __init__(self, *, pin: bool = False):
        self.pin = pin
        self.arenas: dict[int, SharedArena] = {}
        self.slot_bytes: dict[int, int] = {}
        self._free: deque[tuple[int, int]] = deque()
        self._returned: deque[tuple[tuple[int, int], object]] = deque()  # appended by lease callbacks, lock-free
        self._waiting_for_gpu: deque[tuple[tuple[int, int], object]] = deque()  # in release order
        self._retired: set[int] = set()
        self._leased: dict[int, int] = {}  # arena_id -> slots currently leased or in flight
        self._next_arena = 0
        self._lock = threading.Lock()
        self.current_arena: int | None = None  # the arena new slots come from
        self.num_slots = 0  # slots in the current arena
        self.largest_batch = 0  # bytes of the largest batch seen; the loader sizes slots from it
        self._iterators = 0  # iterators drawing slots from this pool now
        self._close_requested = False

    # -- arenas ----------------------------------------------------------------

    def add_arena(self, num_slots: int, slot_bytes: int) -> int:
        """A new arena of `num_slots` slots; returns its id. Older arenas are retired."""
        slot_bytes = _round_up(slot_bytes, PAGE)
        arena = SharedArena.create(num_slots * slot_bytes)
        # Not prefaulted here: the workers' first writes fault the pages in, off the training
        # loop's thread, and each slot is faulted once in its life (pinning faults them all).
        if self.pin:
            arena.pin()
        with self._lock:
            self._collect_returned()
            arena_id = self._next_arena
            self._next_arena += 1
            for old in list(self.arenas):
                self._retire(old)
            self.arenas[arena_id] = arena
            self.slot_bytes[arena_id] = slot_bytes
            self._leased[arena_id] = 0
            self._free.extend((arena_id, s) for s in range(num_slots))
            self.current_arena, self.num_slots = arena_id, num_slots
        return arena_id

    def dedicated_arena(self, fd: int, num_bytes: int) -> int:
        """Adopt a worker-made segment that holds one batch (`fd` is closed here: the batch holds no
        descriptor, however long it is kept); the segment is unmapped when that batch dies."""
        arena = SharedArena.adopt(fd, num_bytes)
        if self.pin:
            arena.pin()
        with self._lock:
            arena_id = self._next_arena
            self._next_arena += 1
            self.arenas[arena_id] = arena
            self.slot_bytes[arena_id] = num_bytes
            self._leased[arena_id] = 1
            self._retired.add(arena_id)
        return arena_id

    def _retire(self, arena_id: int) -> None:
        """Stop handing out slots of `arena_id`; close it once none is leased (lock held)."""
        self._retired.add(arena_id)
        self._free = deque(s for s in self._free if s[0] != arena_id)
        if self._leased.get(arena_id, 0) == 0:
            self._close_arena(arena_id)

    def _close_arena(self, arena_id: int) -> None:
        arena = self.arenas.pop(arena_id, None)
        self.slot_bytes.pop(arena_id, None)
        self._leased.pop(arena_id, None)
        if arena is not None:
            arena.close()

    # -- slots -----------------------------------------------------------------

    def acquire(self) -> tuple[int, int] | None:
        """A free (arena_id, slot_id), or None when every slot is leased or in flight."""
        with self._lock:
            self._collect_returned()
            if not self._free:
                return None
            slot = self._free.popleft()
            self._leased[slot[0]] += 1
            return slot

    def release(self, slot: tuple[int, int]) -> None:
        """Return a slot (called when a leased buffer dies, and for slots a failed batch never used).

        Lease callbacks run wherever the garbage collector runs — on any thread, even
        inside this pool's own locked code — so this takes no lock: it only
        appends to a deque (atomic), which the next locked operation drains.
        """
        event = None
        if self.pin:
            import torch

            if torch.cuda.is_initialized():
                event = torch.cuda.Event()
                event.record()  # copies queued from this slot so far finish before it is reused
        self._returned.append((slot, event))
        # Usually nobody holds the lock: put the slot back now (and close a retired arena
        # whose last batch this was). If the lock is taken — perhaps by this very thread,
        # with the garbage collector running inside it — its holder drains the deque.
        if self._lock.acquire(blocking=False):
            try:
                self._collect_returned()
            finally:
                self._lock.release()

    def _collect_returned(self) -> None:
        """Put returned slots back (lock held), those with pending GPU copies once the copies are done."""
        while self._returned:
            self._waiting_for_gpu.append(self._returned.popleft())
        while self._waiting_for_gpu and (self._waiting_for_gpu[0][1] is None or self._waiting_for_gpu[0][1].query()):
            self._put_back(self._waiting_for_gpu.popleft()[0])

    def _put_back(self, slot: tuple[int, int]) -> None:
        arena_id = slot[0]
        if arena_id not in self._leased:
            return
        self._leased[arena_id] -= 1
        if arena_id in self._retired:
            if self._leased[arena_id] == 0:
                self._close_arena(arena_id)
        else:
            self._free.append(slot)

    def lease_buffer(self, arena_id: int, slot_id: int, used_bytes: int):
        """A buffer over the used part of a slot whose garbage collection releases the slot.

        A plain `weakref.ref` with a callback, kept in `_LEASES`, rather than
        `weakref.finalize` (whose Python-level bookkeeping costs ~0.7 µs more a
        batch, on the training loop's thread). Like a finalizer, the entry keeps
        the pool alive until the batch dies; unlike one, it does not run at
        interpreter exit, when returning a slot no longer matters.
        """
        arena = self.arenas[arena_id]
        offset = 0 if slot_id < 0 else slot_id * self.slot_bytes[arena_id]
        buffer = arena.view(offset, max(used_bytes, 1))
        ref = weakref.ref(buffer, _lease_ended)
        _LEASES[id(ref)] = (ref, self, (arena_id, slot_id))
        return buffer

    @property
    def num_free(self) -> int:
        with self._lock:
            self._collect_returned()
            return len(self._free)

    def iterator_started(self) -> None:
        with self._lock:
            self._iterators += 1

    def iterator_ended(self) -> None:
        with self._lock:
            self._iterators -= 1
            closing = self._close_requested and self._iterators == 0
        if closing:
            self.close()

    def close_when_unused(self) -> None:
        """`close()` once no iterator draws slots from the pool: `for batch in DataLoader(...)` drops
        the loader at once, and its iterator must keep its slots for the rest of the epoch."""
        with self._lock:
            self._close_requested = True
            closing = self._iterators == 0
        if closing:
            self.close()

    def close(self) -> None:
        """Retire every arena; those still viewed by live batches close when the batches die."""
        with self._lock:
            self._collect_returned()
            for arena_id in list(self.arenas):
                self._retire(arena_id)
            self.current_arena, self.num_slots = None, 0


_LEASES: dict[int, tuple] = {}  # id(weak reference to a leased buffer) -> (that reference, pool, slot)


def _lease_ended(ref) -> None:
    """A leased buffer died (on whatever thread collected it): its slot goes back to its pool."""
    lease = _LEASES.pop(id(ref), None)  # one dict operation: atomic, so no lock
    if lease is not None:
        lease[1].release(lease[2])
