"""Packing documents into fixed-length rows for language-model pretraining.

`PackedDataset` (documents packed into rows) and `PaddedDataset` (one
document per row) are the user's objects; `plan.py` decides which tokens fill
which row (no data read), `fill.py` writes batches with the kernels of
`fastload/kernels/pack.py`.
"""

from fastload.packing.dataset import BatchKey, PackedBatchSampler, PackedDataset, split_blocks
from fastload.packing.padded import PaddedDataset
from fastload.packing.plan import PackPlan

__all__ = ["PackedDataset", "PaddedDataset", "PackedBatchSampler", "BatchKey", "PackPlan", "split_blocks"]
