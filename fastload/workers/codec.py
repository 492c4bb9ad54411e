"""Turn a collated batch into (skeleton, leaves in shared memory) and back.

The batch's structure — dicts, tuples, namedtuples, strings, numbers, any
picklable object — is pickled as a small *skeleton*; every CPU tensor and
numeric numpy array in it becomes a persistent id that names a *leaf*: its
byte offset in the slot, dtype and shape. Leaves that the slot-aware collate
already stacked into the slot stay where they are; others are copied in
once. The main process unpickles the skeleton and replaces each persistent id
with a tensor (or array) that views the slot: no copy.

See NOTE [fastload worker protocol] in `protocol.py` for where these travel.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import torch

from fastload.pool import ALIGN, SharedArena, SlotFull, SlotWriter

__all__ = ["encode_batch", "encode_computed_batch", "decode_batch", "slot_bytes_of", "Leaf"]

Leaf = tuple  # (byte offset, kind "torch"/"numpy", dtype name, shape, number of elements)


def _is_leaf(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.device.type == "cpu" and obj.layout == torch.strided and not obj.is_nested and not obj.requires_grad and type(obj) is torch.Tensor
    return isinstance(obj, np.ndarray) and type(obj) is np.ndarray and obj.dtype.kind in "biufc"


class _LeafPickler(pickle.Pickler):
    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.leaves: list = []

    def persistent_id(self, obj):
        if _is_leaf(obj):
            self.leaves.append(obj)
            return len(self.leaves) - 1
        return None


def _bytes_of(leaf) -> np.ndarray:
    """The leaf's bytes as a contiguous uint8 array (a view when already contiguous)."""
    if isinstance(leaf, torch.Tensor):
        leaf = leaf.contiguous()
        return leaf.reshape(-1).view(torch.uint8).numpy() if leaf.numel() else np.zeros(0, np.uint8)
    return np.ascontiguousarray(leaf).view(np.uint8).reshape(-1)


def _describe(leaf, offset: int) -> Leaf:
    if isinstance(leaf, torch.Tensor):
        return (offset, "torch", str(leaf.dtype).removeprefix("torch."), tuple(leaf.shape), leaf.numel())
    return (offset, "numpy", leaf.dtype.str, leaf.shape, leaf.size)


def _offset_in_slot(leaf, writer: SlotWriter, base: int) -> int | None:
    """Where a tensor already placed in the slot by the collate starts, if it is one."""
    if isinstance(leaf, torch.Tensor) and leaf.is_contiguous() and leaf.numel():
        start = leaf.data_ptr() - base
        if 0 <= start and start + leaf.numel() * leaf.element_size() <= writer.used:
            return start
    return None


def encode_batch(batch, writer: SlotWriter | None, slot_address: int = 0):
    """(skeleton bytes, leaves, used bytes, fd of a dedicated segment or None).

    With a `writer`, leaves go into its slot; if they do not fit (or there is
    no slot) a dedicated shared-memory segment of exactly the right size is
    made and its fd returned — the caller sends it and closes it.
    """
    buffer = io.BytesIO()
    pickler = _LeafPickler(buffer)
    pickler.dump(batch)
    skeleton = buffer.getvalue()
    if writer is not None:
        try:
            leaves = []
            for leaf in pickler.leaves:
                offset = _offset_in_slot(leaf, writer, slot_address)
                if offset is None:
                    data = _bytes_of(leaf)
                    offset = writer.allocate(len(data))
                    np.frombuffer(writer.buffer, np.uint8, len(data), offset)[:] = data
                leaves.append(_describe(leaf, offset))
            return skeleton, leaves, writer.used, None
        except SlotFull:
            pass
    sizes = [len(_bytes_of(leaf)) for leaf in pickler.leaves]
    offsets, total = [], 0
    for size in sizes:
        total = -(-total // ALIGN) * ALIGN
        offsets.append(total)
        total += size
    arena = SharedArena.create(max(total, 1), name="fastload-batch")
    for leaf, offset, size in zip(pickler.leaves, offsets, sizes):
        if size:
            np.frombuffer(arena.memory, np.uint8, size, offset)[:] = _bytes_of(leaf)
    fd = os.dup(arena.fd)
    arena.close()
    leaves = [_describe(leaf, offset) for leaf, offset in zip(pickler.leaves, offsets)]
    return skeleton, leaves, max(total, 1), fd


def encode_computed_batch(batch: dict, tensor_dtypes: dict, writer: SlotWriter, slot_address: int):
    """`encode_batch` for a dict of numpy arrays a dataset wrote into the slot itself (`__fastload_batch__`).

    Skips the generic pickling walk: the skeleton is the tuple of names (the
    main process builds the dict without unpickling) and each leaf is
    described from where its array lies. They decode as tensors, viewed as
    `tensor_dtypes[name]` where given (bfloat16). None if any array is not
    in the slot (it did not fit): the caller then takes the generic path.
    """
    names = tuple(batch)
    leaves = []
    placed = writer.placed  # arrays `slot_array` made, by identity: no __array_interface__ dict per array (~4 µs each)
    for name in names:
        array = batch[name]
        entry = placed.get(id(array))
        if entry is not None and entry[0] is array:
            start = entry[1]
        else:
            start = array.__array_interface__["data"][0] - slot_address
            if not array.flags.c_contiguous or start < 0 or start + array.nbytes > writer.used:
                return None
        dtype = tensor_dtypes.get(name) or _dtype_name(array.dtype)
        leaves.append((start, "torch", dtype, array.shape, array.size))
    return names, leaves, writer.used, None


def slot_bytes_of(arrays: list[np.ndarray]) -> int:
    """The bytes `arrays` take when a dataset allocates them in a slot in this order (as `SlotWriter` places them)."""
    writer = SlotWriter(None, 1 << 62)
    for array in arrays:
        writer.allocate(array.nbytes)
    return writer.used


def _leaf(leaf: Leaf, buffer):
    """The array or tensor a leaf describes, viewing `buffer` (the slot's lease) in place."""
    offset, kind, dtype, shape, count = leaf
    if kind == "numpy":
        if not count:
            return np.zeros(shape, np.dtype(dtype))
        return np.frombuffer(buffer, np.dtype(dtype), count, offset).reshape(shape)
    if not count:
        return torch.empty(shape, dtype=getattr(torch, dtype))
    numpy_dtype = _NUMPY_DTYPES.get(dtype)
    if numpy_dtype is not None:
        # An ndarray over the slot, wrapped without a copy (~1 µs; frombuffer + view ~2.3 µs).
        # Its base is `buffer`, the slot's lease, which so lives as long as the tensor.
        return torch.from_numpy(np.ndarray(shape, numpy_dtype, buffer=buffer, offset=offset))
    # bfloat16 and other dtypes numpy lacks; torch.frombuffer keeps `buffer` alive too.
    return torch.frombuffer(buffer, dtype=getattr(torch, dtype), count=count, offset=offset).view(shape)


_DTYPE_NAMES: dict[np.dtype, str] = {}  # numpy computes `dtype.name` in Python (~1.5 µs); a batch asks it per array


def _dtype_name(dtype: np.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


_NUMPY_DTYPES = {
    name: np.dtype(name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "complex64", "complex128")
}


def decode_batch(skeleton: bytes | tuple, leaves: list, buffer):
    """The batch, its tensors viewing `buffer` (a leased slot) in place.

    A tuple skeleton names the keys of a computed batch's flat dict (see
    `encode_computed_batch`): no unpickling at all.
    """
    if type(skeleton) is tuple:
        return {name: _leaf(leaf, buffer) for name, leaf in zip(skeleton, leaves)}
    unpickler = pickle.Unpickler(io.BytesIO(skeleton))  # the C unpickler, with a per-call hook: ~1 µs less than a subclass
    unpickler.persistent_load = lambda pid: _leaf(leaves[pid], buffer)
    return unpickler.load()
