"""Seeded randomness for the sampler: keyed generators and a lazy uniform permutation.

Every random choice the sampler makes draws from a generator keyed by
(seed, epoch, purpose, index) through numpy's Philox counter-based generator,
so any part of an epoch (one partition's window, one block order) can be
recomputed on its own, in any process, in any order, with the same result.
That is what makes resumption arithmetic instead of replay.

`FeistelPermutation` is a bijection of [0, n) that is evaluated one position
at a time (vectorised over positions), so a uniform shuffle of a billion
samples needs no billion-entry array: a 4-round Feistel network over the
next power of four, with cycle-walking to stay inside [0, n).
"""

from __future__ import annotations

import numpy as np

__all__ = ["generator", "FeistelPermutation"]

# Purposes: distinct streams for the distinct random choices of an epoch.
BLOCK_ORDER = 1
WINDOW = 2
UNIFORM = 3
PACK_WINDOW = 4  # the document order inside a packing window (fastload.packing)


def generator(seed: int, epoch: int, purpose: int, index: int = 0) -> np.random.Generator:
    """A generator that depends only on its four keys (hashed by numpy's SeedSequence)."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, epoch, purpose, index])))


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """A 64-bit mixing function (splitmix64's finaliser) of x and a round key."""
    z = (x + key) & _MASK64
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


class FeistelPermutation:
    """A pseudo-random bijection of [0, n), keyed by a generator; `perm(positions)` is vectorised."""

    ROUNDS = 4

    def __init__(self, n: int, rng: np.random.Generator):
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = n
        bits = max(2, int(n - 1).bit_length())
        self.half_bits = (bits + 1) // 2
        self.half_mask = np.uint64((1 << self.half_bits) - 1)
        self.keys = rng.integers(0, 2**63, size=self.ROUNDS, dtype=np.uint64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half_bits)
        left, right = x >> shift, x & self.half_mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right, key) & self.half_mask)
        return (left << shift) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        x = np.asarray(positions, dtype=np.uint64)
        out = self._encrypt(x)
        # Cycle-walk: the network permutes [0, 4**half_bits); values outside [0, n)
        # are encrypted again until they land inside, which keeps it a bijection of [0, n).
        outside = out >= np.uint64(self.n)
        while outside.any():
            out[outside] = self._encrypt(out[outside])
            outside = out >= np.uint64(self.n)
        return out.astype(np.int64)
