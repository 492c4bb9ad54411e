"""The slow, obvious twins of the kernels in `pack.py`, for the tests.

`packed_epoch_reference` takes a plan's windows as given (which documents,
in which order: that is the plan's job, tested on its own) and does
everything else token by token in plain Python: partition streams, padding,
rows, shifted labels, segments and positions. `split_runs_at_windows_reference`
cuts stretches of the stream at window starts one position at a time, and
`padded_rows_reference` builds one padded row per document. Nothing here is
used at run time.
"""

from __future__ import annotations

import numpy as np

from fastload.kernels.pack import IGNORE_INDEX

__all__ = ["packed_epoch_reference", "split_runs_at_windows_reference", "padded_rows_reference"]


def _partition_streams(plan, documents: list, eos_id: int) -> list[list[tuple[int, bool]]]:
    """Per partition, its stream as (token, starts_a_unit) pairs, padding included as token None."""
    streams = []
    for p in range(plan.num_partitions):
        a, e = int(plan.partition_starts[p]), int(plan.partition_starts[p + 1])
        stream: list[tuple[int | None, bool]] = []
        for w in range(plan.num_windows):
            units = plan.window(w)
            if not a <= units.start < e:
                continue
            for doc, skip, take in zip(units.doc.tolist(), units.skip.tolist(), units.take.tolist()):
                full = list(documents[doc]) + ([eos_id] if plan.add_eos else [])
                piece = full[skip : skip + take]
                stream.extend((token, i == 0) for i, token in enumerate(piece))
        del stream[e - a :]  # with remainder="drop", the last window runs on past the last batch
        padding = (e - a) - len(stream)
        stream.extend((None, i == 0) for i in range(padding))
        streams.append(stream)
    return streams


def packed_epoch_reference(plan, documents: list, *, eos_id: int, pad_id: int) -> dict:
    """Every global batch of the epoch of `plan` (a `fastload.packing.plan.PackPlan`): arrays of shape (num_batches, global_batch_size, seq_len)."""
    L, L1, B = plan.seq_len, plan.row_tokens, plan.global_batch_size
    shape = (plan.num_batches, B, L)
    out = {
        "input_ids": np.zeros(shape, np.int64),
        "labels": np.zeros(shape, np.int64),
        "position_ids": np.zeros(shape, np.int64),
        "document_ids": np.zeros(shape, np.int32),
    }
    bounds = plan.column_bounds
    for p, stream in enumerate(_partition_streams(plan, documents, eos_id)):
        quota = int(bounds[p + 1] - bounds[p])
        for k in range(len(stream) // L1):
            row = stream[k * L1 : (k + 1) * L1]
            b, c = k // quota, int(bounds[p]) + k % quota
            segment = position = 0
            for col, (token, starts_unit) in enumerate(row):
                if col > 0 and starts_unit:
                    segment, position = segment + 1, 0
                if col < L:
                    out["input_ids"][b, c, col] = pad_id if token is None else token
                    out["position_ids"][b, c, col] = position
                    out["document_ids"][b, c, col] = segment
                if col > 0:
                    out["labels"][b, c, col - 1] = IGNORE_INDEX if token is None else token
                position += 1
    return out


def split_runs_at_windows_reference(begin, length, out, starts, num_windows: int) -> tuple[np.ndarray, ...]:
    """Walk each stretch one stream position at a time and start a new run wherever the window changes."""
    runs: list[list[int]] = []  # [window, begin, end, out]
    for b, n, o in zip(np.asarray(begin).tolist(), np.asarray(length).tolist(), np.asarray(out).tolist()):
        previous = None
        for x in range(b, b + n):
            w = max(i for i, start in enumerate(np.asarray(starts).tolist()) if start <= x)
            window = w if w < num_windows else -1
            if previous is not None and w == previous:
                runs[-1][2] = x + 1
            else:
                runs.append([window, x, x + 1, o + (x - b)])
            previous = w
    columns = np.array(runs, np.int64).reshape(-1, 4)
    return tuple(np.ascontiguousarray(columns[:, k]) for k in range(4))


def padded_rows_reference(documents: list, sample_ids, *, seq_len: int, eos_id: int, pad_id: int, add_eos: bool) -> dict:
    """One document per row, the obvious way: tokens (+ EOS) cut to seq_len + 1, then shifted and padded."""
    rows = {name: [] for name in ("input_ids", "labels", "attention_mask", "position_ids")}
    for i in sample_ids:
        tokens = (list(documents[i]) + ([eos_id] if add_eos else []))[: seq_len + 1]
        inputs, labels = tokens[:seq_len], tokens[1:]
        rows["input_ids"].append(inputs + [pad_id] * (seq_len - len(inputs)))
        rows["labels"].append(labels + [IGNORE_INDEX] * (seq_len - len(labels)))
        rows["attention_mask"].append([1] * len(inputs) + [0] * (seq_len - len(inputs)))
        rows["position_ids"].append(list(range(len(inputs))) + [0] * (seq_len - len(inputs)))
    return {name: np.array(values, np.int64).reshape(len(rows["input_ids"]), seq_len) for name, values in rows.items()}
