"""The two loaders `fastload bench` compares, over a dataset that counts the block bytes every process reads."""

from __future__ import annotations

import multiprocessing

import numpy as np

from fastload.benchmark.collate import PackingCollate
from fastload.benchmark.report import BenchOptions
from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.store.object_store import worker_start_method

__all__ = ["CountingDataset", "naive_loader", "fastload_loader", "tokens_or_text", "new_counter"]


def new_counter():
    """A byte count shared by every worker, forked or spawned (a spawn-context lock works in both;
    workers are spawned after object-store requests, see `store/object_store.py`)."""
    return multiprocessing.get_context("spawn").Value("q", 0)


class CountingDataset(Dataset):
    """A `fastload.Dataset` that adds the bytes of every block it reads to a counter shared by all processes."""

    def __init__(self, path, *, counter=None, **kwargs):
        super().__init__(path, **kwargs)
        self.counter = counter if counter is not None else new_counter()
        self._block_bytes = np.concatenate([info.block_bytes for info in self.index.shards]) if self.index.shards else np.zeros(0, np.int64)

    def read_block(self, block_id: int):
        batch = super().read_block(block_id)
        with self.counter.get_lock():
            self.counter.value += int(self._block_bytes[block_id])
        return batch

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "counter": self.counter}

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        path = state.pop("path")
        self.__init__(path, **state)


# ---------------------------------------------------------------- the naive loader


class DocumentTokens:
    """Document i's token ids and EOS, as int64: one `Dataset[i]` (and one `encode`) per sample — the naive
    loader's map-style dataset (module-level, so that spawned workers can unpickle it)."""

    def __init__(self, datasets: list, *, column: str, tokenizer, eos_id: int):
        self.datasets, self.column, self.tokenizer, self.eos_id = datasets, column, tokenizer, eos_id
        self.starts = np.cumsum([0, *(len(d) for d in datasets)])

    def __len__(self):
        return int(self.starts[-1])

    def __getitem__(self, i):
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        value = self.datasets[k][i - int(self.starts[k])][self.column]
        ids = self.tokenizer.encode(value) if self.tokenizer is not None else value
        return np.append(np.asarray(ids, np.int64), np.int64(self.eos_id))


def naive_loader(datasets: list[CountingDataset], *, column: str, tokenizer, eos_id: int, docs_per_batch: int, options: BenchOptions,
                 num_workers: int, weights: list | None = None):
    """Documents read one `Dataset[i]` at a time and packed in Python; with several datasets (a mixture), documents drawn
    with torch's `WeightedRandomSampler` so each dataset's share follows its weight on average, as a torch user would."""
    import torch
    import torch.utils.data as tud

    documents = DocumentTokens(datasets, column=column, tokenizer=tokenizer, eos_id=eos_id)
    collate = PackingCollate(documents, batch_size=options.batch_size, row_tokens=options.seq_len + 1, seed=options.seed, split_labels=True)
    generator = torch.Generator().manual_seed(options.seed)
    start_method = worker_start_method() if num_workers else None  # torch refuses a context without workers
    if weights is None:
        return tud.DataLoader(documents, batch_size=docs_per_batch, shuffle=True, num_workers=num_workers, collate_fn=collate, generator=generator,
                              multiprocessing_context=start_method)
    per_document = np.concatenate([np.full(len(d), float(w) / max(1, len(d))) for d, w in zip(datasets, weights)])
    sampler = tud.WeightedRandomSampler(torch.as_tensor(per_document), num_samples=len(documents), replacement=True, generator=generator)
    return tud.DataLoader(documents, batch_size=docs_per_batch, sampler=sampler, num_workers=num_workers, collate_fn=collate,
                          multiprocessing_context=start_method)


def fastload_loader(dataset, *, column: str, tokenizer, doc_lengths, options: BenchOptions, num_workers: int):
    """fastload's packed loader over a dataset, or over a `fastload.Mixture` of them (doc_lengths: one dataset's, or None)."""
    from fastload.loader import DataLoader
    from fastload.packing import PackedDataset
    from fastload.sampler import SamplerOptions

    extra = {"doc_lengths": doc_lengths} if doc_lengths is not None and tokenizer is not None else {}
    packed = PackedDataset(dataset, seq_len=options.seq_len, column=column, tokenizer=tokenizer, eos_id=options.eos_id, sampling=SamplerOptions(seed=options.seed), **extra)
    return DataLoader(packed, batch_size=options.batch_size, num_workers=num_workers, shuffle=True)


# ---------------------------------------------------------------- measuring


class Batches:
    """Batches of a loader, epoch after epoch (a new iterator when one ends)."""

    def __init__(self, loader):
        self.loader, self.iterator = loader, iter(loader)

    def __next__(self):
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)

    def close(self) -> None:
        shutdown = getattr(self.iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self.iterator = self.loader = None


def tokens_or_text(dataset: Dataset, tokenizer_spec: str | None):
    """(column, tokenizer or None): the tokens column as stored, else the text column with a tokenizer."""
    kinds = {c.name: c.kind for c in dataset.schema}
    tokens = [n for n, k in kinds.items() if k == "tokens"]
    texts = [n for n, k in kinds.items() if k == "text"]
    if tokens and tokenizer_spec is None:
        return ("tokens" if "tokens" in tokens else tokens[0]), None
    if texts:
        from fastload.tokenizer import load_tokenizer

        return ("text" if "text" in texts else texts[0]), load_tokenizer(tokenizer_spec or "default")
    columns = ", ".join(f"{c.name} ({c.kind})" for c in dataset.schema)
    raise ConfigError(
        f"fastload bench measures token datasets: {str(dataset.path)!r} has no tokens or text column (its columns: {columns}). "
        "Convert text with 'fastload convert --tokenizer default' to benchmark language-model batches."
    )
