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

The modules: `report` (options, results, table, JSON), `loaders` (the two
loaders), `collate` (the naive packing collate; numpy only), `measure` (one
timed run), `proc` (process-tree memory and `machine_info`; standard library
only) and `run`. The peer benchmarks in the repository's `bench/` measure
with `proc` and pack their naive contender with `collate`, in processes
whose memory they report; so the names here, like fastload's, are imported
on first use, and those two modules load neither pyarrow nor Numba.

What this deliberately does not do: assert any speed (a slow or busy
machine gives small numbers, never an error), benchmark peers (that is
`bench/` in the repository), or measure datasets without a tokens or text
column (`ArrayDataset` columns have no naive twin here yet). It prints
nothing: the CLI writes the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastload.exports import export_on_first_use

if TYPE_CHECKING:
    from fastload.benchmark.report import BenchOptions, BenchReport, LoaderResult, parse_workers
    from fastload.benchmark.run import run_benchmark

# public name -> the module it comes from, imported on first use: `fastload.benchmark.proc` and
# `.collate` stay free of pyarrow and Numba for the peers' benchmark processes that import them
_EXPORTS = {
    "BenchOptions": "fastload.benchmark.report",
    "BenchReport": "fastload.benchmark.report",
    "LoaderResult": "fastload.benchmark.report",
    "parse_workers": "fastload.benchmark.report",
    "run_benchmark": "fastload.benchmark.run",
}

__all__ = ["BenchOptions", "LoaderResult", "BenchReport", "run_benchmark", "parse_workers"]

export_on_first_use(__name__, _EXPORTS)
