"""`MixtureBatchSampler`: one rank's batches of a mixture, as keys a worker computes; resumable in O(1).

A mixture has no epochs of its own — each source passes at its own pace —
so an epoch here is a length the loader can report: as many global batches
as the sources' rows fill together (one pass of each, laid end to end), or
fewer when a source set to "stop" ends the mixture first. Batch b of epoch
e is global batch e·len + b of the mixture's one order.

The state is a few integers — the epoch and the rows the whole job consumed
in it — plus what fixes the order (the mixture's sources, weights and
policies, the batch size, the shuffle options) and, for the record, what
each source has delivered: rows, tokens, and whole passes. Loading it does
no replay: the next batch is computed directly.
"""

from __future__ import annotations

from typing import NamedTuple

from fastload.errors import ConfigError
from fastload.sampler.mixture_plan import MixturePlan
from fastload.sampler.options import SamplerOptions
from fastload.sampler.sampler import _check_world, resume_position

__all__ = ["MixtureBatchSampler", "MixtureKey"]

STATE_VERSION = 1


class MixtureKey(NamedTuple):
    """What a worker needs to compute one rank's share of one global batch of a mixture."""

    batch: int  # global batch since the start of the mixture
    rank: int
    world_size: int
    global_batch_size: int
    order: str
    seed: int
    window_blocks: int
    num_partitions: int | None


class MixtureBatchSampler:
    """Rank `rank`'s batches of a mixture dataset (one with `mixture_plan(global_batch_size, options)`)."""

    def __init__(self, dataset, global_batch_size: int, *, rank: int = 0, world_size: int = 1, options: SamplerOptions, tokens_per_row: int | None = None):
        _check_world(global_batch_size, rank, world_size)
        self.dataset, self.global_batch_size, self.options = dataset, global_batch_size, options
        self.rank, self.world_size = rank, world_size
        self.tokens_per_row = tokens_per_row
        self.plan: MixturePlan = dataset.mixture_plan(global_batch_size, options)
        rows_per_pass = sum(int(n) * int(g) for n, g in zip(self.plan.batches_per_pass, self.plan.layout.source_columns))
        self.epoch_batches = max(1, rows_per_pass // global_batch_size)
        self.epoch = 0
        self.samples_consumed = 0  # rows, by the whole job, in the current epoch

    def _first_batch(self, epoch: int) -> int:
        return epoch * self.epoch_batches

    def __len__(self) -> int:
        end = self.plan.num_batches
        first = self._first_batch(self.epoch)
        if end is None:
            return self.epoch_batches
        return max(0, min(self.epoch_batches, end - first))

    def worker_rows(self, num_workers: int) -> list[tuple[int, int]]:
        """How `num_workers` workers share each batch: rows [lo, hi) of it per worker, cut evenly (a
        mixture's rows mix sources' lanes, so no one cut falls on every source's partitions)."""
        share = self.global_batch_size // self.world_size
        edges = [k * share // num_workers for k in range(num_workers + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def set_epoch(self, epoch: int) -> None:
        if type(epoch) is not int or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative integer, found {epoch!r}")
        if epoch != self.epoch:
            self.epoch, self.samples_consumed = epoch, 0

    def __iter__(self):
        """The current epoch from its resume point, then the next epoch begins (see `Sampler.__iter__`)."""
        o, first = self.options, self._first_batch(self.epoch)
        for b in range(self.samples_consumed // self.global_batch_size, len(self)):
            yield MixtureKey(first + b, self.rank, self.world_size, self.global_batch_size, o.order, o.seed, o.window_blocks, o.num_partitions)
        self.epoch, self.samples_consumed = self.epoch + 1, 0

    def consumed(self, batches_done: int = 0) -> dict[str, dict]:
        """Per source: rows, tokens (packed rows) and whole passes delivered so far."""
        batch = self._first_batch(self.epoch) + (self.samples_consumed // self.global_batch_size) + batches_done
        counts = self.plan.consumed(batch)
        for record in counts.values():
            record["tokens"] = record["rows"] * self.tokens_per_row if self.tokens_per_row else None
        return counts

    def state_dict(self, *, batches_done: int = 0) -> dict:
        return {
            "version": STATE_VERSION,
            "kind": "mixture",
            "epoch": self.epoch,
            "samples_consumed": self.samples_consumed + batches_done * self.global_batch_size,
            "global_batch_size": self.global_batch_size,
            "tokens_per_row": self.tokens_per_row,
            "order": self.options.order,
            "seed": self.options.seed,
            "window_blocks": self.options.window_blocks,
            "num_partitions": self.options.num_partitions,
            "epoch_batches": self.epoch_batches,
            "mixture": self.dataset.mixture.fingerprint(),
            "sources": self.plan.describe_sources(),
            "consumed": self.consumed(batches_done),
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("kind") != "mixture":
            raise ConfigError("this state was not written by a mixture loader; it cannot position a mixture")
        current = self.state_dict()
        _explain_mixture_change(state.get("mixture"), current["mixture"])
        fixed = ("global_batch_size", "tokens_per_row", "order", "seed", "window_blocks", "num_partitions", "sources", "epoch_batches")
        self.epoch, self.samples_consumed = resume_position(state, current, fixed=fixed, what="mixture sampler", version=STATE_VERSION)


def _explain_mixture_change(saved, current: dict) -> None:
    """Refuse a state saved under another mixture, saying what differs."""
    if saved == current:
        return
    if not isinstance(saved, dict):
        raise ConfigError("the saved mixture state does not describe its mixture; it was not written by fastload")
    differences = []
    old, new = saved.get("sources", []), current["sources"]
    if old != new:
        differences.append(f"sources {old} (now {new})")
    for field in ("weights", "on_exhausted"):
        for name in new:
            before, after = saved.get(field, {}).get(name), current[field].get(name)
            if name in old and before != after:
                differences.append(f"{name!r} {field[:-1] if field == 'weights' else field} {before} (now {after})")
    raise ConfigError("cannot resume: the mixture differs from the saved one in " + "; ".join(differences or ["its description"]) + "; resume with the same mixture")
