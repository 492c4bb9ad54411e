"""Packing documents into fixed-length rows for language-model pretraining.

`PackedDataset` is the user's object; `plan.py` decides which tokens fill
which row (no data read), `fill.py` writes batches with the kernels of
`fastload/kernels/pack.py`.
"""

from fastload.packing.dataset import BatchKey, PackedBatchSampler, PackedDataset
from fastload.packing.plan import PackPlan

__all__ = ["PackedDataset", "PackedBatchSampler", "BatchKey", "PackPlan"]
