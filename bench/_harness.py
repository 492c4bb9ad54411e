"""The timing harness the benchmarks in `bench/` share: warm-up, repeats, median, min–max.

    timing = measure(run, setup=clean, warmup=1, repeats=3)
    timing.median_s, timing.min_s, timing.max_s, timing.samples_s
    iterator, batch, first_batch_s = first_batch(make_loader)   # time to the first batch
    peak = PeakMemory(); peak.sample(); peak.rss_mb, peak.pss_mb  # summed over the process tree (fastload.benchmark.proc)
    ratio(x, baseline)                                            # "2.41x" against the baseline of the same run
    status(result)                                                # "ok", "not installed" or "FAILED"

A benchmark measures each contender in a child process of its own
(`run_child`): imports, thread pools and allocator state of one library then
cannot slow down or speed up another, and a contender that fails to import
or crashes becomes a row with its error instead of ending the run. The child
prints one JSON object on its last stdout line; `child_main` wraps a
function so it does exactly that.

Peak memory (`PeakMemory`, `tree_memory_bytes`), `tree_cpu_seconds` and `machine_info` are
`fastload.benchmark.proc`'s, the module `fastload bench` measures with: it
imports only the standard library and `fastload` imports its own names on
first use, so a peer's child that imports this harness loads no numpy,
pyarrow or Numba to inflate the memory it reports.

What this file deliberately does not do: pin CPUs, drop the page cache or
retry outliers. The machines here are shared and small (2 cores), so the
benchmarks report the median of a few repeats after a warm-up and the
min–max beside it, and a reader judges the spread.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from fastload.benchmark.proc import PeakMemory, machine_info, tree_cpu_seconds, tree_memory_bytes

__all__ = [
    "Timing",
    "measure",
    "first_batch",
    "PeakMemory",
    "tree_memory_bytes",
    "tree_cpu_seconds",
    "ratio",
    "status",
    "default_workers",
    "run_child",
    "child_main",
    "machine_info",
    "format_table",
    "write_json",
]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed repeats (warm-up runs are not in `samples_s`)."""

    samples_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples_s:
            raise ValueError("a Timing needs at least one sample")

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def min_s(self) -> float:
        return min(self.samples_s)

    @property
    def max_s(self) -> float:
        return max(self.samples_s)

    def to_json(self) -> dict:
        return {"samples_s": list(self.samples_s), "median_s": self.median_s, "min_s": self.min_s, "max_s": self.max_s}


def measure(run: Callable[[], object], *, setup: Callable[[], object] | None = None, warmup: int = 1, repeats: int = 3) -> Timing:
    """Time `run()` `repeats` times after `warmup` untimed calls; `setup()` runs untimed before every call."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, found warmup={warmup}, repeats={repeats}")
    samples = []
    for i in range(warmup + repeats):
        if setup is not None:
            setup()
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        if i >= warmup:
            samples.append(elapsed)
    return Timing(tuple(samples))


def first_batch(make_loader: Callable[[], object]) -> tuple[object, object, float]:
    """(iterator, first batch, seconds): from constructing the loader to the first batch in hand."""
    started = time.perf_counter()
    iterator = iter(make_loader())
    batch = next(iterator)
    return iterator, batch, time.perf_counter() - started


def ratio(value: float, baseline: float | None) -> str:
    """`value / baseline` as a table cell ('' without a baseline): three decimals below 0.1x."""
    if not baseline or value is None:
        return ""
    x = value / baseline
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


def status(result: dict) -> str:
    """'ok', 'not installed' (the peer's package is missing) or 'FAILED' for a child's result."""
    error = result.get("error")
    if not error:
        return "ok"
    if "ModuleNotFoundError" in error or "No module named" in error or "not installed" in error:
        return "not installed"
    return "FAILED"


def default_workers() -> list[int]:
    """Worker counts for scaling: 0, 1, 2, and 4, 8, 16 where the machine has that many cores."""
    cpus = os.cpu_count() or 1
    return [0, 1, 2] + [w for w in (4, 8, 16) if w <= cpus]


def run_child(argv: Sequence[str], *, timeout_s: float, env: dict | None = None) -> dict:
    """Run a child benchmark process; its last stdout line is a JSON object, returned as a dict.

    A child that exits non-zero, prints no JSON or runs past `timeout_s`
    gives `{"error": ...}` with the tail of its stderr, so the caller can
    report it in its table rather than lose it.
    """
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict):
            return result
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:]) or "(no output)"
    return {"error": f"exit code {proc.returncode}: {tail}"}


def child_main(fn: Callable[[], dict]) -> None:
    """Run `fn()` in a child: print its dict as the last stdout line, or `{"error": ...}` on any exception."""
    try:
        result = fn()
    except BaseException as exc:  # the parent reports it in its table: nothing is swallowed
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        result = {"error": f"{type(exc).__name__}: {exc}{where}"}
        traceback.print_exc()
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None) -> str:
    """A plain-text table; `align` is one of 'l'/'r' per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def write_json(path: str | os.PathLike, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
