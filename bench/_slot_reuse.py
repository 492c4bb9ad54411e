"""Check 4 of `gpu_check.py`: slot reuse never overwrites a copy still in flight, and its control.

A real `fastload.DataLoader(pin_memory=True, num_workers=2)` is read; each
batch is copied to the device behind queued work (so the copy is still
pending), and the host batch is dropped at once, which returns its slot to
the pool. pool.py's docstring says the slot is refilled only after the CUDA
work queued at that moment has finished. Checksums computed on the device
are compared with those of the same batches read by a single-process loader
on the host. The control reads again with a pool that ignores the events:
its mismatches show the race is real under these settings.

The device is a parameter (`DeviceOps`): `cuda_ops` on a GPU, `cpu_ops` in
the tests, which run the loader, the pool and the bookkeeping on the CPU
(there, copies are synchronous, so no race can happen). What this module
does not do: build datasets (gpu_check.py does) or time anything precisely.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Callable

from _check_results import CheckResult, mismatched_batches, warning_note

HEADER = ["batches", "count", "mismatched", "seconds", "warnings"]


@dataclass(frozen=True)
class DeviceOps:
    """What check 4 does on its device; CUDA's in `cuda_ops`, the CPU's in `cpu_ops` (for the tests)."""

    device: str
    to_device: Callable  # host tensor -> device tensor, asynchronously where the device can
    delay: Callable[[], None]  # queue work ahead of the next copy, so the copy is still pending when the host moves on
    mark: Callable[[], object]  # a marker of the work queued so far (a CUDA event)
    wait: Callable[[object], None]  # block until a marker's work is done


def cpu_ops() -> DeviceOps:
    return DeviceOps("cpu", to_device=lambda t: t.clone(), delay=lambda: None, mark=lambda: None, wait=lambda marker: None)


def cuda_ops(*, delay_cycles: int) -> DeviceOps:
    import torch

    def mark():
        event = torch.cuda.Event()
        event.record()
        return event

    return DeviceOps("cuda", to_device=lambda t: t.to("cuda", non_blocking=True),
                     delay=lambda: torch.cuda._sleep(delay_cycles), mark=mark, wait=lambda event: event.synchronize())


def batch_checksum(batch):
    """(number of tensors,) int64: for each tensor of the batch (dict keys sorted), sum(value x (position % 251 + 1)).

    Position weights catch rows swapped or shifted, not only changed values;
    integer sums are exact in any order, so the device and the host agree
    bit for bit. Computed on whatever device the batch is on.
    """
    import torch

    tensors = [batch[k] for k in sorted(batch)] if isinstance(batch, dict) else [batch]
    sums = []
    for t in tensors:
        flat = t.reshape(-1).to(torch.int64)  # (numel,)
        weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.int64) % 251 + 1  # (numel,)
        sums.append((flat * weights).sum())
    return torch.stack(sums)  # (num_tensors,)


def device_checksums(loader, ops: DeviceOps, *, max_in_flight: int) -> list[list[int]]:
    """Each batch copied to the device and dropped at once; its checksum computed there. See NOTE in pool.py.

    Dropping the host batch returns its slot to the pool while its copy may
    still be queued behind `ops.delay()`: the pool must not let a worker
    refill it until the copy has run. The host waits only when more than
    `max_in_flight` batches' work is pending: enough that a freed slot comes
    up for reuse while its copy is still queued (else there is no race to
    guard against), at the price of the pool's running out of ready slots at
    times (the loader then uses one-off segments and warns).
    """
    import torch

    sums, pending = [], deque()
    for batch in loader:
        ops.delay()
        moved = {k: ops.to_device(v) for k, v in batch.items()} if isinstance(batch, dict) else ops.to_device(batch)
        del batch  # the last reference to the host batch: its slot goes back now, the copy perhaps still queued
        sums.append(batch_checksum(moved))
        del moved
        pending.append(ops.mark())
        if len(pending) > max_in_flight:
            ops.wait(pending.popleft())
    if not sums:
        return []
    return torch.stack(sums).cpu().tolist()  # one synchronisation, at the end


def host_checksums(loader) -> list[list[int]]:
    return [batch_checksum(batch).tolist() for batch in loader]


def compare_reads(label: str, make_loader: Callable, ops: DeviceOps, *, max_in_flight: int) -> dict:
    """Checksums of the pinned multi-worker read on the device vs a single-process read on the host."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        on_device = device_checksums(make_loader(num_workers=2, pin_memory=True), ops, max_in_flight=max_in_flight)
        seconds = time.perf_counter() - started
    reference = host_checksums(make_loader(num_workers=0, pin_memory=False))
    bad = mismatched_batches(on_device, reference)
    return {"label": label, "batches": len(reference), "mismatched": bad, "seconds": seconds, "warnings": warning_note(caught)}


def check_slot_reuse(cases: dict[str, Callable], ops: DeviceOps, *, max_in_flight: int) -> CheckResult:
    """Check 4. `cases`: label -> make_loader(num_workers=, pin_memory=) giving the same batches for any worker count."""
    rows, figures, verdict = [], {}, "PASS"
    for label, make_loader in cases.items():
        r = compare_reads(label, make_loader, ops, max_in_flight=max_in_flight)
        figures[label] = r
        verdict = "FAIL" if r["mismatched"] else verdict
        rows.append(_reuse_row(r))
    note = ("every batch equal on the device and on the host" if verdict == "PASS"
            else "a slot was refilled under a pending copy, or the workers' batches differ from a single-process read")
    if any("holds every one" in r["warnings"] for r in figures.values()):
        note += (f" (a warning that the loop 'holds every slot' is expected here: up to {max_in_flight + 1} batches' copies are kept "
                 "pending on purpose, their slots wait for them, and the loader falls back to one-off segments)")
    return CheckResult("slot reuse never overwrites an in-flight copy", verdict, HEADER,
                       rows, note=note, figures=figures)


def check_slot_reuse_control(make_loader: Callable, ops: DeviceOps, *, max_in_flight: int) -> CheckResult:
    """The control of check 4 (never a failure): the same read with a pool that reuses slots without waiting for CUDA.

    Mismatches here show that the race check 4 guards against does happen
    on this machine with these settings, so check 4's PASS means something;
    none means check 4 could not have seen it (WARN).
    """
    r = compare_reads("pool that ignores CUDA events", eager_reuse_loader(make_loader), ops, max_in_flight=max_in_flight)
    if r["mismatched"]:
        verdict, note = "PASS", f"{len(r['mismatched'])} of {r['batches']} batches corrupted without the events: check 4 can see the race"
    else:
        verdict, note = "WARN", "no batch corrupted even without the events: the race did not occur, so check 4's PASS proves less"
    return CheckResult("control for check 4: slots reused without waiting for the GPU", verdict,
                       HEADER, [_reuse_row(r)], note=note, figures=r)


def _reuse_row(r: dict) -> list[str]:
    return [r["label"], str(r["batches"]), str(len(r["mismatched"])), f"{r['seconds']:.2f}", r["warnings"]]


def eager_reuse_loader(make_loader: Callable) -> Callable:
    """The control: `make_loader`, but its multi-worker loader's pool puts slots back without waiting for CUDA events."""
    import weakref

    import torch

    from fastload.pool import BufferPool

    class EagerReusePool(BufferPool):
        def _collect_returned(self) -> None:
            # The bug planted on purpose: a slot's event is dropped, so it is refilled at once. Segments of retired
            # or one-off arenas keep theirs: closing one unregisters and unmaps it, which under a pending copy
            # could fault the GPU rather than corrupt a batch.
            while self._returned:
                slot, event = self._returned.popleft()
                self._waiting_for_gpu.append((slot, event if slot[0] in self._retired else None))
            super()._collect_returned()

    def make(**kw):
        loader = make_loader(**kw)
        if kw.get("num_workers"):
            # DataLoader._buffer_pool keeps the pool it finds if its `pin` matches what the iterator asks for
            pool = loader._pool = EagerReusePool(pin=bool(kw.get("pin_memory")) and torch.cuda.is_available())
            weakref.finalize(loader, pool.close)
        return loader

    return make
