"""`PackedMixture`: packed language-model batches from a weighted mixture of datasets.

    mix = fastload.Mixture({"web": ("data/web", 0.6), "code": ("data/code", 0.3), "books": ("data/books", 0.1)})
    packed = fastload.PackedDataset(mix, seq_len=1024)        # a PackedMixture
    loader = fastload.DataLoader(packed, batch_size=16, num_workers=2, shuffle=True)
    for batch in loader:    # input_ids, labels, position_ids, document_ids: (16, 1024); source: (16,)
        ...

Each source is packed on its own, as `PackedDataset` packs one dataset,
into rows of seq_len + 1 tokens; the mixture decides which source fills
each row of each global batch (`sampler/mixing.py`): source s fills
⌊w_s·B⌋ or ⌈w_s·B⌉ rows of every batch, and the first t batches hold
within one row of w_s·B·t of its rows. The unit is the packed row, so the
proportions hold for tokens too (every row holds the same number), which is
what a pretraining mixture specifies. `source` says which source filled
each row (its index in `mixture.names`), for per-source losses.
"""

from __future__ import annotations

import numpy as np

from fastload.errors import ConfigError, FastloadError
from fastload.packing.dataset import PackedDataset
from fastload.sampler import SamplerOptions
from fastload.sampler.batch_dataset import BatchDataset
from fastload.sampler.mixture import Mixture
from fastload.sampler.mixture_plan import MixturePlan
from fastload.sampler.mixture_sampler import MixtureBatchSampler, MixtureKey

__all__ = ["PackedMixture"]


class PackedMixture(BatchDataset):
    """A `Mixture` packed into rows of `seq_len + 1` tokens; arguments as `PackedDataset` (every source
    shares them: one EOS id, one tokenizer). blocks: {source name: block ids} to read only those
    blocks of a source (a split, see `split_blocks`); others read all of theirs."""

    def __init__(
        self,
        mixture: Mixture,
        *,
        seq_len: int,
        column: str | None = None,
        tokenizer=None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        add_eos: bool = True,
        sampling: SamplerOptions | None = None,
        blocks: dict | None = None,
    ):
        super().__init__(sampling)
        if not isinstance(mixture, Mixture):
            raise ConfigError(f"PackedMixture takes a fastload.Mixture, found {type(mixture).__name__}")
        unknown = set(blocks or {}) - set(mixture.names)
        if unknown:
            raise ConfigError(f"blocks= names {', '.join(sorted(unknown))}, not sources of the mixture ({', '.join(mixture.names)})")
        self.mixture = mixture
        self.sources: list[PackedDataset] = []
        for name, dataset in mixture.datasets.items():
            try:
                self.sources.append(PackedDataset(
                    dataset, seq_len=seq_len, column=column, tokenizer=tokenizer, eos_id=eos_id, pad_id=pad_id, add_eos=add_eos,
                    blocks=(blocks or {}).get(name),
                ))
            except FastloadError as error:  # the same kind of error, saying which source
                raise type(error)(f"mixture source {name!r}: {error}") from None
        self.seq_len, self.add_eos = seq_len, add_eos
        self._check_sources_agree()
        first = self.sources[0]
        self.eos_id, self.pad_id = first.eos_id, first.pad_id
        self._reset_process_state()

    def _check_sources_agree(self) -> None:
        """One EOS, one padding id and one tokenizer: rows of different sources meet in one batch."""
        names, first = self.mixture.names, self.sources[0]
        for name, source in zip(names[1:], self.sources[1:]):
            for what in ("eos_id", "pad_id"):
                if getattr(source, what) != getattr(first, what):
                    raise ConfigError(
                        f"mixture sources {names[0]!r} and {name!r} have different {what} ({getattr(first, what)} and "
                        f"{getattr(source, what)}); pass {what}= to use one for all, or convert them with the same tokenizer"
                    )
            recorded = [_tokenizer_identity(s) for s in (first, source)]
            if None not in recorded and recorded[0] != recorded[1]:
                raise ConfigError(
                    f"mixture sources {names[0]!r} and {name!r} were tokenized with different tokenizers "
                    f"({recorded[0]} and {recorded[1]}); their token ids do not mean the same text. Convert them with one tokenizer"
                )

    def _reset_process_state(self) -> None:
        self._plans: dict[tuple, MixturePlan] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_plans": {}}  # plans hold closures; each process builds its own

    # -- the order -------------------------------------------------------------------

    def mixture_plan(self, global_batch_size: int, options: SamplerOptions) -> MixturePlan:
        key = (global_batch_size, options)
        plan = self._plans.get(key)
        if plan is None:
            sources = self.sources

            def plan_of(s: int, epoch: int, columns: int, source_options: SamplerOptions):
                return sources[s].plan(epoch, columns, source_options)

            def describe(s: int) -> str:
                return f"{int(sources[s].doc_lengths.sum()) + len(sources[s].doc_lengths) * int(self.add_eos):,} tokens"

            plan = self._plans[key] = MixturePlan(
                self.mixture.weights, plan_of=plan_of, describe=describe, options=options, global_batch_size=global_batch_size,
                on_exhausted=self.mixture.on_exhausted, names=self.mixture.names, schedule=self.mixture.schedule,
            )
        return plan

    def check_run(self, num_batches: int, global_batch_size: int) -> None:
        """Refuse a run of `num_batches` global batches that would read a source more often than its `max_repetitions`."""
        if not self.mixture.max_repetitions:
            return
        plan = self.mixture_plan(global_batch_size, self.sampler_options(shuffle=True))
        read = plan.repetitions(num_batches)
        for name, limit in self.mixture.max_repetitions.items():
            if read[name] > limit:
                raise ConfigError(
                    f"mixture source {name!r} would be read {read[name]} times in {num_batches:,} global batches of {global_batch_size}, "
                    f"more than its max_repetitions={limit}; lower its weight, train for fewer steps, or give it more data"
                )

    def batch_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, drop_last: bool = False) -> MixtureBatchSampler:
        """The sampler `fastload.DataLoader` uses: one `MixtureKey` per batch of this rank (batches are always full)."""
        options = self.sampler_options(shuffle=shuffle)
        return MixtureBatchSampler(self, global_batch_size, rank=rank, world_size=world_size, options=options, tokens_per_row=self.seq_len + 1)

    # -- batches -----------------------------------------------------------------------

    def __fastload_batch__(self, key: MixtureKey, allocate) -> dict:
        """Rank `key.rank`'s rows of global batch `key.batch`, as arrays from `allocate(shape, dtype)`."""
        options = SamplerOptions(order=key.order, seed=key.seed, window_blocks=key.window_blocks, num_partitions=key.num_partitions)
        plan = self.mixture_plan(key.global_batch_size, options)
        share = key.global_batch_size // key.world_size
        lo, hi = key.rank * share, (key.rank + 1) * share
        shape = (hi - lo, self.seq_len)
        out = {
            "input_ids": allocate(shape, np.int64),
            "labels": allocate(shape, np.int64),
            "position_ids": allocate(shape, np.int64),
            "document_ids": allocate(shape, np.int32),
            "source": allocate((hi - lo,), np.int64),
        }
        for piece in plan.pieces(key.batch, lo, hi):
            source = self.sources[piece.source]
            source_plan = plan.plan(piece.source, piece.epoch, piece.columns)
            plan_key = ("mixture", piece.epoch, piece.columns, plan.source_options[piece.source])
            rows = source._batch_filler().fill_rows(source_plan, plan_key, piece.batch, piece.lo, piece.hi).as_dict()
            for name, array in rows.items():
                out[name][piece.out] = array
            out["source"][piece.out] = piece.source
        return out

    def __getitem__(self, key: MixtureKey) -> dict:
        """A batch by its key (how torch's own fetcher asks, with num_workers=0)."""
        if not isinstance(key, MixtureKey):
            raise TypeError("a PackedMixture is indexed by the MixtureKeys its batch_sampler yields; it has no rows of its own")
        return self.__fastload_batch__(key, np.empty)

    def __repr__(self) -> str:
        return f"PackedMixture({self.mixture!r}, seq_len={self.seq_len})"


def _tokenizer_identity(source: PackedDataset):
    """What identifies the tokenizer of a source's token ids, or None when nothing is recorded."""
    if source.tokenizer is not None:
        return None  # tokenized on the fly with the tokenizer given to all sources
    record = source.dataset.index.tokenizer or {}
    identity = record.get("fingerprint") or record.get("name")
    return identity
