"""What a model needs from a packed batch to keep attention inside documents.

    batch = next(iter(loader))                                   # from fastload.PackedDataset
    cu = fastload.cu_seqlens(batch["document_ids"])              # int32, on the batch's device
    max_len = int(cu.diff().max())
    out = flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len)   # q, k, v: (B * T, heads, dim)

`document_ids[r, t]` numbers the document pieces of row r from 0 (packing
writes them; a document cut by a row boundary is a new piece in the next
row). Variable-length attention kernels (flash-attention's `*_varlen_*`,
PyTorch's nested jagged tensors) take the same information as offsets into
the flattened (B * T) tokens instead. This module converts, with torch
operations only, so a batch already on the GPU stays there. What it does
not do: build a dense (B, T, T) mask (`ids[:, :, None] == ids[:, None, :]`
is one line, and too big to precompute for long rows).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cu_seqlens"]


def cu_seqlens(document_ids: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Start offsets of every document piece in the flattened (B * T) batch, then B * T: int32 (pieces + 1,).

    document_ids: (B, T), a tensor on any device or a numpy array, as packed
    batches carry it. A piece starts where the id changes along a row and
    at every row start (attention never crosses rows). The result is on the
    input's device (CPU for numpy); `cu.diff()` are the pieces' lengths.
    """
    ids = torch.as_tensor(document_ids)
    if ids.ndim != 2:
        raise ValueError(f"document_ids must be (batch, seq_len), as packed batches carry them; found shape {tuple(ids.shape)}")
    rows, seq_len = ids.shape
    starts = torch.ones_like(ids, dtype=torch.bool)  # (B, T)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1]
    offsets = torch.nonzero(starts.reshape(-1)).reshape(-1)  # (pieces,)
    total = torch.tensor([rows * seq_len], dtype=offsets.dtype, device=offsets.device)
    return torch.cat([offsets, total]).to(torch.int32)
