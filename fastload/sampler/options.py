"""`SamplerOptions`: how an epoch is ordered, validated once, frozen.

Every default says where it came from. Nothing here reads the environment or
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastload.errors import ConfigError

__all__ = ["SamplerOptions", "ORDERS"]

# The registry of epoch orders (see `orders.py`). Kept here, as names, so the
# options can be validated without importing the implementations.
ORDERS = ("block_window", "uniform", "sequential")


@dataclass(frozen=True)
class SamplerOptions:
    """Options of a sampler. All are keyword-only in practice; see `Sampler`.

    order: `block_window` (the default when shuffling: blocks in a random
        order, samples shuffled within a window of blocks, ranks reading
        disjoint blocks), `uniform` (every sample anywhere; for comparison,
        reads blocks at random) or `sequential` (storage order, no shuffle).
    seed: any non-negative integer; with the epoch it fixes the order.
    window_blocks: blocks live at once in each partition's stream (8: with
        1 MiB blocks, 8 MiB per partition; a rank serving 8 partitions keeps
        64 MiB decoded — the samples of a batch come from up to
        window_blocks × num_partitions blocks).
    num_partitions: the canonical number of partitions an epoch is cut into;
        the global order is identical for every world size, and a world size
        that divides both `num_partitions` and the global batch reads each
        block on one rank only. None: min(64, number of blocks), so 1, 2, 4,
        8, 16, 32 and 64 ranks all get perfect locality on large datasets.
    drop_last: drop the last, incomplete global batch (True) or complete it
        by repeating samples from the start of the epoch (False, torch's
        default; every rank still gets the same number of batches).

    The locality these options promise (each block read once per rank, from
    a bounded window) is a property of the *order*; a reader realises it
    only if it keeps the live blocks decoded: about 2 × window_blocks × the
    partitions it serves (`Sampler.live_blocks()`). The fast path's workers
    do; for `fastload.Dataset` rows read through `ds[i]`, `fastload.DataLoader`
    sizes the dataset's block cache to it (`Dataset.fit_cache`) unless the
    user chose `cache_blocks`.
    """

    order: str = "block_window"
    seed: int = 0
    window_blocks: int = 8
    num_partitions: int | None = None
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"unknown sampler order {self.order!r}; valid orders are {', '.join(ORDERS)}")
        if type(self.seed) is not int or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, found {self.seed!r}; pick any number such as 0 or 1234")
        if type(self.window_blocks) is not int or self.window_blocks < 1:
            raise ConfigError(
                f"window_blocks must be a positive integer (blocks live at once per partition), found {self.window_blocks!r}; "
                "use 1 for the least memory, 8 (default) or more for better mixing"
            )
        if self.num_partitions is not None and (type(self.num_partitions) is not int or self.num_partitions < 1):
            raise ConfigError(f"num_partitions must be a positive integer or None, found {self.num_partitions!r}")
        if not isinstance(self.drop_last, bool):
            raise ConfigError(f"drop_last must be True or False, found {self.drop_last!r}")

    @classmethod
    def for_shuffle(cls, shuffle: bool, **kwargs) -> "SamplerOptions":
        """torch-style `shuffle=` flag: block_window when True, sequential when False."""
        return cls(order="block_window" if shuffle else "sequential", **kwargs)
