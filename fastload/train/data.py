"""The trainer's data: a block-disjoint train/validation split, the training loader, and the validation batches.

Training batches come from `fastload.DataLoader` over a `PackedDataset` of
the training blocks: shuffled every epoch, computed in the workers into
shared memory (pinned when training on CUDA, so the host-to-device copy is
non-blocking), split across ranks under torch.distributed, and resumable
from `loader.state_dict()`. The loader draws its worker seeds from a
generator of its own, so creating or resuming it leaves the global torch
RNG (dropout's) untouched and resumption is exact.

Validation batches are read once, at the start, from the held-out blocks
(`split_blocks`: no document on both sides) in storage order, and kept: every
evaluation scores the same rows, and evaluating never waits for data.

A `fastload.Mixture` trains on its `PackedMixture`: each source is split
on its own (its held-out blocks form the validation mixture, in the same
proportions), and the loader's sampler reports what each source delivered.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import torch

from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.loader import DataLoader
from fastload.packing import PackedDataset, split_blocks
from fastload.sampler import Mixture, SamplerOptions
from fastload.train.config import TrainConfig

__all__ = ["TrainData", "open_data", "to_device", "vocab_size_of"]


@dataclass
class TrainData:
    dataset: Dataset  # a mixture's first source: what the vocabulary and tokenizer are read from
    loader: DataLoader  # or the caller's own iterable of batch dicts
    validation: list[dict]  # batches on the training device; empty without a split
    train_blocks: list[int] | dict | None  # a mixture's: {source: blocks}
    validation_blocks: list[int] | dict | None
    mixture: Mixture | None = None


def open_data(dataset: Dataset | Mixture | str | os.PathLike, config: TrainConfig, *, device: torch.device, loader=None) -> TrainData:
    """The split, the training loader and the validation batches; `loader` replaces fastload's for training."""
    if isinstance(dataset, Mixture):
        return _open_mixture(dataset, config, device=device, loader=loader)
    opened = _open(dataset, config)
    tokenizer = _tokenizer(config.tokenizer)
    train_blocks = validation_blocks = None
    if config.validation:
        train_blocks, validation_blocks = split_blocks(opened, validation=config.validation, seed=config.seed)
    if loader is None:
        packed = PackedDataset(opened, seq_len=config.rows_seq_len, blocks=train_blocks, sampling=SamplerOptions(seed=config.seed), tokenizer=tokenizer)
        loader = _training_loader(packed, config, device)
    validation = []
    if validation_blocks is not None:
        held_out = PackedDataset(opened, seq_len=config.rows_seq_len, blocks=validation_blocks, sampling=SamplerOptions(seed=config.seed), tokenizer=tokenizer)
        validation = _validation_batches(held_out, config, device, what=f"the validation blocks {validation_blocks.tolist()}")
    return TrainData(opened, loader, validation, _list(train_blocks), _list(validation_blocks))


def _open_mixture(mixture: Mixture, config: TrainConfig, *, device: torch.device, loader=None) -> TrainData:
    opened = {name: _open(d, config) for name, d in mixture.datasets.items()}
    mixture = Mixture(
        {name: (opened[name], mixture.weights[name]) for name in mixture.names}, on_exhausted=mixture.on_exhausted,
        schedule=dict(mixture.schedule), max_repetitions=mixture.max_repetitions,
    )
    tokenizer = _tokenizer(config.tokenizer)
    train_blocks = validation_blocks = None
    if config.validation:
        splits = {name: split_blocks(d, validation=config.validation, seed=config.seed) for name, d in opened.items()}
        train_blocks = {name: train for name, (train, _) in splits.items()}
        validation_blocks = {name: held for name, (_, held) in splits.items()}
    sampling = SamplerOptions(seed=config.seed)
    if loader is None:
        packed = PackedDataset(mixture, seq_len=config.rows_seq_len, blocks=train_blocks, sampling=sampling, tokenizer=tokenizer)
        world = torch.distributed.get_world_size() if torch.distributed.is_available() and torch.distributed.is_initialized() else 1
        packed.check_run(config.steps * config.grad_accum, config.batch_size * world)  # a step takes grad_accum global batches
        loader = _training_loader(packed, config, device)
    validation = []
    if validation_blocks is not None:
        held_out = PackedDataset(mixture, seq_len=config.rows_seq_len, blocks=validation_blocks, sampling=sampling, tokenizer=tokenizer)
        validation = _validation_batches(held_out, config, device, what="the sources' validation blocks")
    as_lists = (lambda blocks: None if blocks is None else {name: _list(b) for name, b in blocks.items()})
    return TrainData(next(iter(opened.values())), loader, validation, as_lists(train_blocks), as_lists(validation_blocks), mixture)


def _open(dataset: Dataset | str | os.PathLike, config: TrainConfig) -> Dataset:
    """A path or URL opened with the config's cache settings (which only a dataset in object storage uses)."""
    if isinstance(dataset, Dataset):
        return dataset
    return Dataset(dataset, cache_dir=config.cache_dir, cache_bytes=config.cache_bytes)


def _training_loader(packed, config: TrainConfig, device: torch.device) -> DataLoader:
    return DataLoader(
            packed, batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
            pin_memory=device.type == "cuda", persistent_workers=config.workers > 0,
            generator=torch.Generator().manual_seed(config.seed),
    )


def _validation_batches(held_out, config: TrainConfig, device: torch.device, *, what: str) -> list[dict]:
    try:
        reader = DataLoader(held_out, batch_size=config.batch_size, shuffle=False, num_workers=0)
        batches = [{k: v.clone() for k, v in batch.items()} for batch in itertools.islice(reader, config.eval_batches)]
    except ConfigError as error:
        raise ConfigError(f"{what} cannot make a validation batch: {error}; raise validation= or lower batch_size") from None
    if not batches:
        raise ConfigError(
            f"{what} hold too few tokens for one batch of {config.batch_size} x {config.rows_seq_len}; raise validation= or lower batch_size"
        )
    return [to_device(batch, device) for batch in batches]


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch on `device`; from pinned memory the copies are asynchronous (non_blocking)."""
    if device.type == "cpu":
        return batch
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def vocab_size_of(dataset: Dataset, config: TrainConfig) -> int:
    """The model's vocabulary: the config's, else the tokenizer's, else the one recorded at conversion."""
    model = config.model_config()
    if model.vocab_size is not None:
        return model.vocab_size
    if config.tokenizer is not None:
        return _tokenizer(config.tokenizer).vocab_size
    recorded = (dataset.index.tokenizer or {}).get("vocab_size")
    if not recorded:
        raise ConfigError(
            f"dataset {str(dataset.path)!r} records no tokenizer, so the vocabulary size is unknown; "
            "convert it with --tokenizer, or give the model a vocab_size (GPTConfig(vocab_size=...))"
        )
    return int(recorded)


def _tokenizer(spec: str | None):
    if spec is None:
        return None
    from fastload.tokenizer import load_tokenizer

    return load_tokenizer(spec)


def _list(blocks) -> list[int] | None:
    return None if blocks is None else [int(b) for b in blocks]
