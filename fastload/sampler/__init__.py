"""The sampler: which samples each rank reads, in which order, epoch by epoch.

`options` (validated options, the names of the orders) → `permutation`
(keyed randomness) → `geometry` (partitions, windows and columns of an
epoch, in rows or tokens) → `orders` (pure epoch plans) → `sampler` (the stateful,
resumable iterator) ; `metrics` measures shuffle quality and I/O. No torch.
"""

from fastload.sampler.mixture import Mixture
from fastload.sampler.options import ORDERS, SamplerOptions
from fastload.sampler.orders import EpochPlan, plan_epoch
from fastload.sampler.sampler import Sampler

__all__ = ["ORDERS", "EpochPlan", "Mixture", "Sampler", "SamplerOptions", "plan_epoch"]
