"""`fastload bench`: fastload's packed loader next to a naive per-sample loader, on the user's own dataset.

    report = run_benchmark("demo/corpus", BenchOptions(batch_size=16, seq_len=1024, workers=(0, 2)))
    print(report.format_table())          # or json.dumps(report.to_json())

Both loaders deliver the same thing from the same dataset: shuffled batches
of `batch_size` rows of `seq_len` token ids (`input_ids` and the shifted
`labels`), documents packed back to back with EOS after each, as int64
tensors. They differ in how:

  naive     `torch.utils.data.DataLoader` over a map-style dataset whose
            `__getitem__(i)` returns document i's tokens (`fastload.Dataset(path)[i]`,
            tokenized per document when the dataset holds text), and a packing
            `collate_fn` that concatenates documents + EOS into rows (enough
            documents per batch for its tokens; short batches top up with random
            documents, the rest carries over). Per-sample Python: what a training
            script without fastload does.
  fastload  `fastload.DataLoader(fastload.PackedDataset(path, seq_len=S),
            batch_size=B, num_workers=W, shuffle=True)`: each batch computed whole
            by a Numba kernel in a worker, written into shared memory.

Measured for each loader and worker count, `repeats` times after `warmup`
untimed runs (each run a new loader; the table gives the median, min–max):
tokens/s over `steps` batches after the first; time to the first batch
(from constructing the loader); the main process's CPU time inside `next()`
per batch (`time.thread_time`: what the training thread spends on loading);
peak RSS and PSS summed over the main process and its workers (from /proc,
sampled about every 0.1 s off the clock; None where /proc is missing); and
the I/O amplification: bytes of the blocks every process read (counted in
`Dataset.read_block`, through a subclass) ÷ the bytes of the dataset the
delivered tokens amount to. 1.0 means each block was read once for the
tokens delivered; W workers that each read every block show W.

What this deliberately does not do: assert any speed (a slow or busy
machine gives small numbers, never an error), benchmark peers (that is
`bench/` in the repository), or measure datasets without a tokens or text
column (`ArrayDataset` columns have no naive twin here yet). It prints
nothing: the CLI writes the table.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from fastload.errors import ConfigError
from fastload.format.reader import Dataset

__all__ = ["BenchOptions", "LoaderResult", "BenchReport", "run_benchmark", "parse_workers"]

LOADERS = ("naive", "fastload")
MEMORY_SAMPLE_S = 0.1  # how often peak memory is sampled; reading smaps costs about a millisecond


@dataclass(frozen=True)
class BenchOptions:
    """What `run_benchmark` measures; the CLI flags are the kebab-case names."""

    batch_size: int = 16  # the README's packed example: 16 rows of 1024 tokens
    seq_len: int = 1024
    workers: tuple[int, ...] = (0, 2)  # torch's default and a typical small-machine setting
    steps: int = 100  # timed batches per run (fewer if an epoch is shorter): the demo corpus has ~110
    warmup: int = 1  # untimed runs first: Numba's compile cache, the page cache
    repeats: int = 3  # timed runs; the median is reported, with min–max
    tokenizer: str | None = None  # for a dataset with only text: "default", "bytes" or a path (default: "default")
    eos_id: int | None = None  # appended after each document; default: the tokenizer's, or the one recorded at conversion
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "steps", "repeats"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{name} must be a positive integer, found {value!r}")
        if type(self.warmup) is not int or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer, found {self.warmup!r}")
        if self.eos_id is not None and (type(self.eos_id) is not int or self.eos_id < 0):
            raise ConfigError(f"eos_id must be a non-negative integer, found {self.eos_id!r}")
        workers = tuple(self.workers)
        if not workers or any(type(w) is not int or w < 0 for w in workers):
            raise ConfigError(f"workers must be one or more non-negative integers, found {self.workers!r}")
        object.__setattr__(self, "workers", workers)


def parse_workers(text: str) -> tuple[int, ...]:
    """'0,2' -> (0, 2), with an error that says what was wrong."""
    try:
        workers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        workers = ()
    if not workers or min(workers) < 0:
        raise ConfigError(f"--workers takes comma-separated non-negative integers such as 0,2; found {text!r}")
    return workers


@dataclass(frozen=True)
class LoaderResult:
    """One loader at one worker count: medians over the timed runs (min–max for tokens/s)."""

    loader: str
    num_workers: int
    tokens_per_s: float
    tokens_per_s_min: float
    tokens_per_s_max: float
    batches_per_s: float
    first_batch_s: float
    main_ms_per_batch: float  # CPU of the calling thread inside next()
    peak_rss_mb: float | None  # summed over the process tree (counts shared pages once per process)
    peak_pss_mb: float | None  # the same, shared pages divided among their processes
    io_amplification: float
    num_batches: int  # timed batches per run
    num_tokens: int  # input tokens in those batches (batch_size x seq_len each), per run
    runs: tuple[dict, ...] = field(repr=False)


@dataclass(frozen=True)
class BenchReport:
    dataset: str
    column: str
    tokenized_on_the_fly: bool
    num_documents: int
    dataset_tokens: int  # with one EOS per document
    dataset_bytes: int  # bytes of all blocks
    num_blocks: int
    options: BenchOptions
    results: tuple[LoaderResult, ...]
    machine: dict

    def result(self, loader: str, num_workers: int) -> LoaderResult:
        for r in self.results:
            if r.loader == loader and r.num_workers == num_workers:
                return r
        raise KeyError((loader, num_workers))

    def speedups(self) -> dict[int, float]:
        """fastload's tokens/s ÷ the naive loader's, per worker count."""
        return {w: self.result("fastload", w).tokens_per_s / self.result("naive", w).tokens_per_s for w in self.options.workers}

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "column": self.column,
            "tokenized_on_the_fly": self.tokenized_on_the_fly,
            "num_documents": self.num_documents,
            "dataset_tokens": self.dataset_tokens,
            "dataset_bytes": self.dataset_bytes,
            "num_blocks": self.num_blocks,
            "options": asdict(self.options),
            "machine": self.machine,
            "results": [asdict(r) for r in self.results],
            "fastload_vs_naive": {str(w): x for w, x in self.speedups().items()},
        }

    def format_table(self) -> str:
        o = self.options
        source = f"text column {self.column!r} tokenized on the fly" if self.tokenized_on_the_fly else f"column {self.column!r}"
        lines = [
            f"{self.dataset}: {self.num_documents:,} documents, {self.dataset_tokens:,} tokens ({source}), "
            f"{self.dataset_bytes / 1e6:.1f} MB in {self.num_blocks:,} blocks",
            f"shuffled packed batches of {o.batch_size} x {o.seq_len} tokens; {self.results[0].num_batches} timed batches a run, "
            f"median of {o.repeats} run(s) after {o.warmup} warm-up; {self.machine['cpus']} CPUs, "
            f"load average {self.machine['load_average_1m']}",
            "",
        ]
        header = ["loader", "workers", "M tokens/s (min-max)", "vs naive", "first batch s", "main ms/batch", "peak RSS MB", "peak PSS MB", "I/O x"]
        rows = []
        for r in self.results:
            naive = self.result("naive", r.num_workers).tokens_per_s
            rows.append([
                r.loader, str(r.num_workers),
                f"{r.tokens_per_s / 1e6:.2f} ({r.tokens_per_s_min / 1e6:.2f}-{r.tokens_per_s_max / 1e6:.2f})",
                f"{r.tokens_per_s / naive:.2f}x", f"{r.first_batch_s:.2f}", f"{r.main_ms_per_batch:.3f}",
                _mb(r.peak_rss_mb), _mb(r.peak_pss_mb), f"{r.io_amplification:.2f}",
            ])
        widths = [max(len(c) for c in column) for column in zip(header, *rows)]
        for i, cells in enumerate([header, ["-" * w for w in widths], *rows]):
            lines.append("  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip())
        lines += [
            "",
            "naive: torch DataLoader, one document per __getitem__ (fastload.Dataset(path)[i]) and a packing collate_fn",
            "fastload: fastload.DataLoader(fastload.PackedDataset(path, seq_len), batch_size, num_workers, shuffle=True)",
            "main ms/batch: the training thread's CPU inside next(); I/O x: bytes of blocks read / bytes the delivered tokens come from",
        ]
        return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# ---------------------------------------------------------------- the dataset, counted


class _CountingDataset(Dataset):
    """A `fastload.Dataset` that adds the bytes of every block it reads to a counter shared by all processes."""

    def __init__(self, path, *, counter=None, **kwargs):
        super().__init__(path, **kwargs)
        self.counter = counter if counter is not None else multiprocessing.Value("q", 0)
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


def _naive_loader(dataset: _CountingDataset, *, column: str, tokenizer, eos_id: int, docs_per_batch: int, options: BenchOptions, num_workers: int):
    import torch
    import torch.utils.data as tud

    batch_size, row_tokens = options.batch_size, options.seq_len + 1

    class DocumentTokens(tud.Dataset):
        """Document i's token ids and EOS, as int64: one `Dataset[i]` (and one `encode`) per sample."""

        def __len__(self):
            return len(dataset)

        def __getitem__(self, i):
            value = dataset[i][column]
            ids = tokenizer.encode(value) if tokenizer is not None else value
            return np.append(np.asarray(ids, np.int64), np.int64(eos_id))

    class PackingCollate:
        """Carry-over + documents, concatenated and cut into (batch_size, seq_len + 1) rows."""

        def __init__(self, documents):
            self.documents, self.carry, self.rng = documents, np.zeros(0, np.int64), None

        def __call__(self, docs):
            if self.rng is None:
                info = tud.get_worker_info()
                self.rng = np.random.default_rng([options.seed, info.id if info else 0])
            need = batch_size * row_tokens
            parts, have = [self.carry, *docs], len(self.carry) + sum(len(d) for d in docs)
            while have < need:
                doc = self.documents[int(self.rng.integers(len(self.documents)))]
                parts.append(doc)
                have += len(doc)
            flat = np.concatenate(parts)
            self.carry = flat[need:]
            rows = torch.from_numpy(flat[:need].reshape(batch_size, row_tokens))  # (B, S + 1)
            return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}  # (B, S) each

    documents = DocumentTokens()
    generator = torch.Generator().manual_seed(options.seed)
    return tud.DataLoader(documents, batch_size=docs_per_batch, shuffle=True, num_workers=num_workers,
                          collate_fn=PackingCollate(documents), generator=generator)


def _fastload_loader(dataset: _CountingDataset, *, column: str, tokenizer, doc_lengths, options: BenchOptions, num_workers: int):
    from fastload.loader import DataLoader
    from fastload.packing import PackedDataset

    packed = PackedDataset(dataset, seq_len=options.seq_len, column=column, tokenizer=tokenizer, eos_id=options.eos_id, seed=options.seed,
                           doc_lengths=doc_lengths if tokenizer is not None else None)
    return DataLoader(packed, batch_size=options.batch_size, num_workers=num_workers, shuffle=True)


# ---------------------------------------------------------------- measuring


class _Batches:
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


def _process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # ended while we looked, or no /proc
            continue
    return found


def tree_memory_bytes() -> tuple[int, int] | None:
    """(RSS, PSS) summed over this process and its descendants, from /proc; None where /proc has no smaps_rollup."""
    if not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"):
        return None
    rss = pss = 0
    for pid in _process_tree(os.getpid()):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


class _PeakMemory:
    def __init__(self):
        self.rss = self.pss = None
        self.last = float("-inf")

    def sample(self, force: bool = False) -> float:
        """Sample if 0.1 s have passed (or `force`); returns the seconds it took, to take off the clock."""
        now = time.perf_counter()
        if not force and now - self.last < MEMORY_SAMPLE_S:
            return 0.0
        found = tree_memory_bytes()
        if found is not None:
            self.rss, self.pss = max(self.rss or 0, found[0]), max(self.pss or 0, found[1])
        self.last = time.perf_counter()
        return self.last - now


def _one_run(make: Callable[[], object], counter, *, num_batches: int) -> dict:
    peak = _PeakMemory()
    with counter.get_lock():
        counter.value = 0
    started = time.perf_counter()
    batches = _Batches(make())
    batch = next(batches)
    first_batch_s = time.perf_counter() - started
    del batch
    peak.sample(force=True)
    tokens = 0
    cpu_s = sampling_s = 0.0
    started = time.perf_counter()
    for _ in range(num_batches):
        c0 = time.thread_time()
        batch = next(batches)
        cpu_s += time.thread_time() - c0
        tokens += batch["input_ids"].numel()
        del batch
        sampling_s += peak.sample()
    elapsed = max(time.perf_counter() - started - sampling_s, 1e-9)
    peak.sample(force=True)
    batches.close()
    gc.collect()
    return {
        "tokens_per_s": tokens / elapsed,
        "batches_per_s": num_batches / elapsed,
        "first_batch_s": first_batch_s,
        "main_ms_per_batch": 1e3 * cpu_s / num_batches,
        "peak_rss_mb": None if peak.rss is None else peak.rss / 2**20,
        "peak_pss_mb": None if peak.pss is None else peak.pss / 2**20,
        "bytes_read": int(counter.value),
        "num_tokens": tokens,
    }


def _summarize(loader: str, num_workers: int, runs: list[dict], *, num_batches: int, bytes_per_token: float) -> LoaderResult:
    def median(key):
        return statistics.median(r[key] for r in runs)

    def peak(key):
        values = [r[key] for r in runs if r[key] is not None]
        return max(values) if values else None

    # bytes read ÷ the bytes that the delivered batches (the timed ones and the first) hold
    io = statistics.median(r["bytes_read"] / (bytes_per_token * r["num_tokens"] * (num_batches + 1) / num_batches) for r in runs)
    return LoaderResult(
        loader=loader, num_workers=num_workers,
        tokens_per_s=median("tokens_per_s"),
        tokens_per_s_min=min(r["tokens_per_s"] for r in runs), tokens_per_s_max=max(r["tokens_per_s"] for r in runs),
        batches_per_s=median("batches_per_s"), first_batch_s=median("first_batch_s"), main_ms_per_batch=median("main_ms_per_batch"),
        peak_rss_mb=peak("peak_rss_mb"), peak_pss_mb=peak("peak_pss_mb"), io_amplification=io,
        num_batches=num_batches, num_tokens=runs[0]["num_tokens"], runs=tuple(runs),
    )


# ---------------------------------------------------------------- the whole benchmark


def _tokens_or_text(dataset: Dataset, tokenizer_spec: str | None):
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


def run_benchmark(path: str | os.PathLike, options: BenchOptions = BenchOptions(), *, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure the naive loader and fastload's at every worker count in `options` on the dataset at `path`.

    `progress(line)` is called before each loader runs (the CLI prints it to stderr).
    """
    from fastload.packing import PackedDataset

    dataset = _CountingDataset(path)
    column, tokenizer = _tokens_or_text(dataset, options.tokenizer)
    # The plan (and, for text, every document's token count: tokenized once, then cached) is built
    # here, untimed: it also checks that the dataset holds at least one batch.
    planned = PackedDataset(dataset, seq_len=options.seq_len, column=column, tokenizer=tokenizer, eos_id=options.eos_id, seed=options.seed)
    doc_lengths = planned.doc_lengths
    eos_id = planned.eos_id
    epoch_batches = len(planned.batch_sampler(options.batch_size, shuffle=True))
    num_batches = max(1, min(options.steps, epoch_batches - 1))  # within the first epoch when it is long enough
    dataset_tokens = int(doc_lengths.sum()) + len(doc_lengths)  # with one EOS each
    dataset_bytes = int(sum(int(info.block_bytes.sum()) for info in dataset.index.shards))
    row_tokens = options.seq_len + 1
    # dataset bytes per delivered input token (a row of seq_len inputs uses seq_len + 1 tokens of the stream)
    bytes_per_token = dataset_bytes / max(1, dataset_tokens) * row_tokens / options.seq_len
    docs_per_batch = max(1, round(options.batch_size * row_tokens / max(1.0, dataset_tokens / max(1, len(doc_lengths)))))
    del planned

    results = []
    for num_workers in options.workers:
        for loader in LOADERS:
            if progress is not None:
                progress(f"  {loader:<8} workers={num_workers}: {options.warmup} warm-up + {options.repeats} run(s) of {num_batches + 1} batches")
            if loader == "naive":
                def make(num_workers=num_workers):
                    return _naive_loader(dataset, column=column, tokenizer=tokenizer, eos_id=eos_id,
                                         docs_per_batch=docs_per_batch, options=options, num_workers=num_workers)
            else:
                def make(num_workers=num_workers):
                    return _fastload_loader(dataset, column=column, tokenizer=tokenizer, doc_lengths=doc_lengths, options=options, num_workers=num_workers)
            runs = []
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*pin_memory.*")
                for i in range(options.warmup + options.repeats):
                    dataset._reset_handles()  # each run opens the shards afresh, as a new training job would
                    run = _one_run(make, dataset.counter, num_batches=num_batches)
                    if i >= options.warmup:
                        runs.append(run)
            results.append(_summarize(loader, num_workers, runs, num_batches=num_batches, bytes_per_token=bytes_per_token))
    return BenchReport(
        dataset=str(path), column=column, tokenized_on_the_fly=tokenizer is not None, num_documents=len(doc_lengths),
        dataset_tokens=dataset_tokens, dataset_bytes=dataset_bytes, num_blocks=dataset.num_blocks, options=options,
        results=tuple(results), machine=_machine(),
    )


def _machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
