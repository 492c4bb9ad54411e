"""Batch input for the encoder: Arrow string arrays in, (ids, offsets) out.

What lives here: turning a `pyarrow` string array (or a list of `str`) into
the three arrays the kernel reads — UTF-8 `data`, int64 `offsets`, a
validity mask — with the checks that data read from disk needs (offsets in
bounds and increasing, UTF-8 valid), and the driver that runs
`encode_documents` on one thread or splits the documents over several
(the kernel releases the GIL). What does not: the tokenizer's tables and
public API.

Invalid UTF-8 (possible in an Arrow array built without validation or read
from a damaged file) is handled the way a `str`-based tokenizer sees it:
the document is decoded with `errors="replace"` — each maximal invalid
subsequence becomes U+FFFD, as Python and Rust's `from_utf8_lossy` do — and
the result is encoded. Only the affected documents go through Python.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastload.errors import ConfigError, TokenizerError

__all__ = ["StringBatch", "from_arrow", "from_strings", "run_encoder", "select_rows", "string_bytes"]

_EMPTY_VALID = np.zeros(0, dtype=np.uint8)


class StringBatch:
    """UTF-8 documents in Arrow layout: doc d is data[offsets[d]:offsets[d+1]]."""

    __slots__ = ("data", "offsets", "valid")

    def __init__(self, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray):
        # One array type for every source (Arrow buffers can be mutable or
        # not): each distinct type would cost the kernel another compile.
        data = data.view()
        data.flags.writeable = False
        self.data = data
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.valid = np.ascontiguousarray(valid, dtype=np.uint8)

    @property
    def num_docs(self) -> int:
        return int(self.offsets.shape[0] - 1)


def from_strings(texts) -> StringBatch:
    import pyarrow as pa

    try:
        arr = pa.array(texts, type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
        arr = pa.array([_clean(t) for t in texts], type=pa.large_string())
    return from_arrow_chunk(arr)


def _clean(text):
    """tiktoken's rule for lone surrogates: they become U+FFFD."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TokenizerError(f"expected str documents, found {type(text).__name__}: {text!r:.80}")
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def from_arrow(arr) -> list[StringBatch]:
    """One `StringBatch` per chunk of a (Chunked)Array of strings."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        return [from_arrow_chunk(chunk) for chunk in arr.chunks]
    if isinstance(arr, pa.Array):
        return [from_arrow_chunk(arr)]
    raise ConfigError(
        f"encode_arrow expects a pyarrow StringArray, LargeStringArray or ChunkedArray of them, "
        f"found {type(arr).__name__}; use encode_batch for a list of str"
    )


def select_rows(arr, rows):
    """Rows `rows` of a (Chunked)Array of strings, in that order, as a new array (Arrow's `take`)."""
    import pyarrow as pa

    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise ConfigError(f"documents must be a 1-d array of row numbers, found dtype {rows.dtype} and shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= len(arr)):
        raise ConfigError(f"documents name rows from {int(rows.min())} to {int(rows.max())}, but the column has {len(arr):,} rows")
    if not isinstance(arr, (pa.Array, pa.ChunkedArray)):
        raise ConfigError(f"encode_arrow expects a pyarrow array of strings, found {type(arr).__name__}")
    return arr.take(pa.array(rows.astype(np.int64), type=pa.int64()))


def string_bytes(arr) -> np.ndarray:
    """UTF-8 bytes of every string of an Arrow string array (int64), from its offsets: nothing is read or checked."""
    import pyarrow as pa

    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    offset_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    n = len(arr)
    offsets_buf = arr.buffers()[1]
    if offsets_buf is None:
        return np.zeros(n, np.int64)
    offsets = np.frombuffer(offsets_buf, dtype=offset_dtype)[arr.offset : arr.offset + n + 1].astype(np.int64)
    return np.diff(offsets) if len(offsets) == n + 1 else np.zeros(n, np.int64)  # a damaged array is caught when encoded


def from_arrow_chunk(arr) -> StringBatch:
    import pyarrow as pa

    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    if pa.types.is_string(arr.type):
        offset_dtype = np.int32
    elif pa.types.is_large_string(arr.type):
        offset_dtype = np.int64
    else:
        raise ConfigError(
            f"encode_arrow expects a string or large_string array, found type {arr.type}; "
            "cast the column to string first"
        )
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    if offsets_buf is None:
        offsets = np.zeros(n + 1, dtype=np.int64)
    else:
        raw = np.frombuffer(offsets_buf, dtype=offset_dtype)
        if raw.shape[0] < arr.offset + n + 1:
            raise TokenizerError(f"corrupt string array: {raw.shape[0]} offsets for {n} strings at offset {arr.offset}")
        offsets = raw[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.zeros(0, dtype=np.uint8) if data_buf is None else np.frombuffer(data_buf, dtype=np.uint8)
    if n and (offsets[0] < 0 or offsets[-1] > data.shape[0] or np.any(offsets[1:] < offsets[:-1])):
        raise TokenizerError(
            f"corrupt string array: offsets run from {offsets[0]} to {offsets[-1]} (data has "
            f"{data.shape[0]} bytes) or decrease; the column is damaged — run 'fastload verify'"
        )
    valid = _EMPTY_VALID
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8)
    return _repair_utf8(StringBatch(data, offsets, valid))


def _repair_utf8(batch: StringBatch) -> StringBatch:
    from fastload.tokenizer.kernels.utf8 import find_invalid_utf8

    bad = np.zeros(batch.num_docs, dtype=np.bool_)
    if find_invalid_utf8(batch.data, batch.offsets, batch.valid, bad) == 0:
        return batch
    pieces, offsets = [], [0]
    for d in range(batch.num_docs):
        raw = batch.data[batch.offsets[d] : batch.offsets[d + 1]].tobytes()
        if bad[d]:
            raw = raw.decode("utf-8", "replace").encode("utf-8")
        pieces.append(raw)
        offsets.append(offsets[-1] + len(raw))
    data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    return StringBatch(data, np.array(offsets, dtype=np.int64), batch.valid)


def run_encoder(
    batch: StringBatch, run_kernel, *, out: np.ndarray | None, num_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Encode every document of `batch`; `run_kernel(batch, start, stop, out, out_offsets)`."""
    n = batch.num_docs
    needed = int(batch.offsets[-1] - batch.offsets[0]) if n else 0  # one id per byte at most
    offsets = np.zeros(n + 1, dtype=np.int64)
    if out is not None:
        if out.dtype != np.uint32 or out.ndim != 1:
            raise ConfigError(f"out must be a 1-D uint32 array, found {out.dtype} with shape {out.shape}")
        if out.shape[0] < needed:
            raise ConfigError(
                f"out has room for {out.shape[0]:,} ids but this batch may need up to {needed:,} "
                "(one per UTF-8 byte); pass a larger buffer (Tokenizer.max_ids tells the size)"
            )
    if num_threads <= 1 or n < 2:
        ids = out if out is not None else np.empty(needed, dtype=np.uint32)
        done = run_kernel(batch, 0, n, ids, offsets)
        if done != n:
            raise TokenizerError(f"internal error: encoder stopped after {done} of {n} documents")
        if out is None and 2 * offsets[-1] < ids.shape[0]:
            return ids[: offsets[-1]].copy(), offsets  # don't keep the one-id-per-byte allocation alive
        return ids[: offsets[-1]], offsets
    # split by bytes so the threads get similar work
    cuts = np.searchsorted(batch.offsets, np.linspace(batch.offsets[0], batch.offsets[-1], num_threads + 1))
    cuts = np.unique(np.clip(cuts, 0, n))
    cuts[0], cuts[-1] = 0, n
    parts = list(zip(cuts[:-1], cuts[1:]))

    def work(part):
        start, stop = int(part[0]), int(part[1])
        size = int(batch.offsets[stop] - batch.offsets[start])
        ids = np.empty(size, dtype=np.uint32)
        local = np.zeros(stop - start + 1, dtype=np.int64)
        done = run_kernel(batch, start, stop, ids, local)
        if done != stop - start:
            raise TokenizerError(f"internal error: encoder stopped after {done} of {stop - start} documents")
        return start, stop, ids[: local[-1]], local

    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        results = list(pool.map(work, parts))
    total = sum(r[2].shape[0] for r in results)
    ids = out[:total] if out is not None else np.empty(total, dtype=np.uint32)
    base = 0
    for start, stop, part_ids, local in results:
        ids[base : base + part_ids.shape[0]] = part_ids
        offsets[start + 1 : stop + 1] = local[1:] + base
        base += part_ids.shape[0]
    return ids, offsets
