"""What `fastload bench` is asked (`BenchOptions`) and what it reports (`BenchReport`, its table and JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


from fastload.errors import ConfigError

__all__ = ["BenchOptions", "LoaderResult", "BenchReport", "parse_workers", "LOADERS"]

LOADERS = ("naive", "fastload")


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
    cache_dir: str | None = None  # a dataset in object storage: the node's block cache folder (default: blocks/ in FASTLOAD_CACHE_DIR or ~/.cache/fastload)
    cache_bytes: int | None = None  # a dataset in object storage: the block cache's size (default: half its disk's free space)

    def __post_init__(self) -> None:
        if self.cache_bytes is not None and (type(self.cache_bytes) is not int or self.cache_bytes < 1):
            raise ConfigError(f"cache_bytes must be a positive integer, found {self.cache_bytes!r}")
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
                format_mb(r.peak_rss_mb), format_mb(r.peak_pss_mb), f"{r.io_amplification:.2f}",
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


def format_mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# ---------------------------------------------------------------- the dataset, counted
