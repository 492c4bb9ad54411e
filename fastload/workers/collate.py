"""torch's `default_collate`, stacking straight into the current task's slot.

torch's own `collate_tensor_fn` stacks a worker's batch into a fresh
shared-memory segment (a new mmap and its page faults for every batch, then
a second copy to pinned memory). Here only that one function is replaced:
the output tensor is carved out of the slot the main process gave this task,
which is already mapped, touched and, with CUDA, pinned. Everything else —
the handling of numpy arrays, numbers, strings, mappings, namedtuples and
sequences, and every error message — is torch's own code, so batches are
identical to torch's.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

from fastload.pool import SlotFull, SlotWriter
from fastload.torch_private import collate, collate_tensor_fn, default_collate_fn_map

__all__ = ["slot_collate", "current_slot", "slot_array", "ComputedBatchCollate"]

_state = threading.local()


class current_slot:
    """Context manager: collations inside write into `writer` (None: ordinary memory)."""

    def __init__(self, writer: SlotWriter | None):
        self.writer = writer

    def __enter__(self):
        _state.writer = self.writer
        return self.writer

    def __exit__(self, *exc):
        _state.writer = None


def _collate_tensor_into_slot(batch, *, collate_fn_map=None):
    elem = batch[0]
    if elem.is_nested or elem.layout != torch.strided:
        return collate_tensor_fn(batch, collate_fn_map=collate_fn_map)  # torch's own errors for these
    writer = getattr(_state, "writer", None)
    if writer is None or elem.device.type != "cpu":
        # No slot (the first batches, or one that overflowed): private memory, which the codec
        # copies into a dedicated segment — not torch's per-batch named shared memory.
        return torch.stack(batch, 0)
    numel = sum(x.numel() for x in batch)
    try:
        offset = writer.allocate(numel * elem.element_size())
    except SlotFull:
        _state.writer = None  # the batch goes to a dedicated segment; stop trying the slot
        return torch.stack(batch, 0)
    flat = torch.frombuffer(writer.buffer, dtype=torch.uint8, count=numel * elem.element_size(), offset=offset) if numel else torch.empty(0, dtype=torch.uint8)
    out = flat.view(elem.dtype).view(len(batch), *elem.shape)
    return torch.stack(batch, 0, out=out)


def slot_array(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised array carved out of the current slot (ordinary memory if there is none, or no room).

    The allocator a dataset's `__fastload_batch__` writes its batch into.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    writer = getattr(_state, "writer", None)
    if writer is None or nbytes == 0:
        return np.empty(shape, dtype)
    try:
        offset = writer.allocate(nbytes)
    except SlotFull:
        _state.writer = None
        return np.empty(shape, dtype)
    array = np.ndarray(shape, dtype, buffer=writer.buffer, offset=offset)
    writer.placed[id(array)] = (array, offset)
    return array


class ComputedBatchCollate:
    """The collate_fn for datasets that compute whole batches (`__fastload_batch__`).

    Their batch is a dict of numpy arrays, already in the slot: each becomes
    a tensor over the same memory, and columns the dataset names in
    `tensor_dtypes` are viewed as that dtype (bfloat16 travels as uint16 bits).
    """

    def __init__(self, tensor_dtypes: dict[str, str] | None = None):
        self.tensor_dtypes = dict(tensor_dtypes or {})

    def __call__(self, batch: dict) -> dict:
        out = {name: torch.from_numpy(array) for name, array in batch.items()}
        for name, dtype in self.tensor_dtypes.items():
            out[name] = out[name].view(getattr(torch, dtype))
        return out


_SLOT_COLLATE_MAP = {**default_collate_fn_map, torch.Tensor: _collate_tensor_into_slot}


def slot_collate(batch):
    """Same result as `torch.utils.data.default_collate(batch)`."""
    return collate(batch, collate_fn_map=_SLOT_COLLATE_MAP)
