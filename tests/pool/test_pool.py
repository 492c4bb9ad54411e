"""The buffer pool on its own: slots, leases, arenas, and the CUDA paths with a fake CUDA."""

import gc
import os
import types

import numpy as np
import pytest
import torch

from fastload.pool import BufferPool, SharedArena, SlotFull, SlotWriter


def _fd_is_memfd(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")


def test_arenas_are_anonymous_memfds_with_no_name_in_dev_shm():
    before = set(os.listdir("/dev/shm"))
    arena = SharedArena.create(1 << 20)
    assert _fd_is_memfd(arena.fd)
    assert set(os.listdir("/dev/shm")) == before
    arena.close()


def test_a_slot_returns_to_the_pool_only_when_the_last_view_of_its_batch_dies():
    pool = BufferPool()
    pool.add_arena(num_slots=2, slot_bytes=4096)
    slot = pool.acquire()
    other = pool.acquire()
    assert pool.acquire() is None
    buffer = pool.lease_buffer(*slot, used_bytes=64)
    tensor = torch.from_numpy(np.frombuffer(buffer, np.float32, 16))
    view = tensor[3:5]
    del buffer, tensor
    gc.collect()
    assert pool.num_free == 0  # `view` still holds the slot
    del view
    gc.collect()
    assert pool.num_free == 1
    pool.release(other)
    assert pool.num_free == 2


def test_a_new_arena_retires_the_old_one_which_closes_when_its_last_batch_dies():
    pool = BufferPool()
    old = pool.add_arena(num_slots=2, slot_bytes=4096)
    held = pool.lease_buffer(*pool.acquire(), used_bytes=8)
    new = pool.add_arena(num_slots=3, slot_bytes=8192)
    assert pool.num_free == 3 and all(pool.acquire()[0] == new for _ in range(3))
    assert old in pool.arenas  # still viewed by `held`
    del held
    gc.collect()
    pool.num_free  # returned slots are collected by the pool's next locked operation
    assert old not in pool.arenas


def test_a_batch_that_outlives_its_closed_pool_still_closes_the_arena_fd_when_it_dies():
    pool = BufferPool()
    arena_id = pool.add_arena(num_slots=2, slot_bytes=4096)
    fd = pool.arenas[arena_id].fd
    held = pool.lease_buffer(*pool.acquire(), used_bytes=8)
    pool.close()  # what the loader's finalizer does when the loader is dropped
    del pool
    gc.collect()
    assert os.path.exists(f"/proc/self/fd/{fd}")  # the live batch keeps its arena open
    del held
    gc.collect()
    assert not os.path.exists(f"/proc/self/fd/{fd}") or not _fd_is_memfd(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _mappings_of(name: str) -> int:
    with open("/proc/self/maps") as maps:
        return sum(f"/memfd:{name} " in line for line in maps)


def test_a_mapping_holds_no_file_descriptor_only_an_arena_still_to_be_sent_keeps_its_own():
    before = _open_fds()
    arena = SharedArena.create(1 << 20)
    assert _open_fds() == before + 1  # its fd, which workers are sent (mmap.mmap held a duplicate too)
    attached = SharedArena.attach(os.dup(arena.fd), arena.num_bytes)  # what a worker does with it
    assert _open_fds() == before + 1 and attached.fd == -1
    attached.view(0, 4)[:] = b"abcd"
    assert arena.view(0, 4).raw == b"abcd"
    attached.close()
    arena.close()
    assert _open_fds() == before


def test_a_one_batch_segment_closes_its_fd_at_once_and_is_unmapped_when_its_batch_dies():
    segment = SharedArena.create(8192, name="fastload-test-segment")  # what a worker makes for one batch
    np.frombuffer(segment.memory, np.int64, 4)[:] = [1, 2, 3, 4]
    fd = os.dup(segment.fd)  # the fd the main process receives
    segment.close()
    assert _mappings_of("fastload-test-segment") == 0
    before = _open_fds()
    pool = BufferPool()
    arena_id = pool.dedicated_arena(fd, 8192)
    assert _open_fds() == before - 1  # kept batches cost no descriptors
    batch = torch.from_numpy(np.frombuffer(pool.lease_buffer(arena_id, -1, used_bytes=32), np.int64, 4))
    assert batch.tolist() == [1, 2, 3, 4] and _mappings_of("fastload-test-segment") == 1
    del batch
    gc.collect()
    pool.num_free  # returned slots are collected by the pool's next locked operation
    assert arena_id not in pool.arenas and _mappings_of("fastload-test-segment") == 0


def test_the_slot_writer_aligns_and_refuses_what_does_not_fit():
    arena = SharedArena.create(4096)
    writer = SlotWriter(arena.view(0, 4096), 4096)
    a, offset_a = writer.array((3,), np.uint8)
    b, offset_b = writer.array((4,), np.float64)
    assert offset_a == 0 and offset_b == 64
    with pytest.raises(SlotFull):
        writer.array((1000,), np.float64)
    del a, b, writer


def test_a_pool_bigger_than_half_the_available_memory_is_refused_with_advice(monkeypatch):
    import fastload.pool as pool_module

    monkeypatch.setattr(pool_module, "available_memory_bytes", lambda: 100 << 20)
    with pytest.raises(pool_module.ConfigError, match="lower prefetch_factor or num_workers"):
        SharedArena.create(80 << 20)


class FakeCuda:
    """Stands in for torch.cuda: records cudaHostRegister calls and lets a test finish 'copies'."""

    def __init__(self):
        self.registered, self.unregistered, self.events = [], [], []

    def install(self, monkeypatch):
        fake = self

        class Event:
            def __init__(self):
                self.done = False
                fake.events.append(self)

            def record(self):
                pass

            def query(self):
                return self.done

        runtime = types.SimpleNamespace(
            cudaHostRegister=lambda ptr, size, flags: fake.registered.append((ptr, size)) or 0,
            cudaHostUnregister=lambda ptr: fake.unregistered.append(ptr) or 0,
        )
        monkeypatch.setattr(torch.cuda, "cudart", lambda: runtime)
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)


def test_a_pinned_pool_registers_each_arena_once_and_unregisters_it_on_close(monkeypatch):
    cuda = FakeCuda()
    cuda.install(monkeypatch)
    pool = BufferPool(pin=True)
    arena_id = pool.add_arena(num_slots=4, slot_bytes=1 << 16)
    arena = pool.arenas[arena_id]
    assert cuda.registered == [(arena.address, arena.num_bytes)]
    pool.close()
    assert cuda.unregistered == [arena.address]


def test_a_pinned_slot_is_reused_only_after_the_gpu_copies_queued_at_release_finish(monkeypatch):
    cuda = FakeCuda()
    cuda.install(monkeypatch)
    pool = BufferPool(pin=True)
    pool.add_arena(num_slots=1, slot_bytes=4096)
    slot = pool.acquire()
    buffer = pool.lease_buffer(*slot, used_bytes=16)
    del buffer  # the batch dies while a non_blocking copy from it may still be running
    gc.collect()
    assert pool.acquire() is None  # not yet: the copy has not finished
    cuda.events[-1].done = True
    assert pool.acquire() == slot


def test_pin_memory_on_a_machine_without_cuda_warns_like_torch_and_still_loads():
    import fastload
    from tests.loader.conftest import Shapes

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the GPU check covers the pinned path")
    with pytest.warns(UserWarning, match="pin_memory"):
        batches = [b["label"].clone() for b in fastload.DataLoader(Shapes(16), batch_size=4, num_workers=2, pin_memory=True)]
    assert len(batches) == 4
