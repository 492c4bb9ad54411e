"""`run_benchmark`: every loader and worker count, warm-up and repeats, into a `BenchReport`."""

from __future__ import annotations

import os
import warnings
from typing import Callable

from fastload.benchmark.loaders import CountingDataset, fastload_loader, naive_loader, tokens_or_text
from fastload.benchmark.measure import one_run, summarize
from fastload.benchmark.proc import machine_info
from fastload.benchmark.report import LOADERS, BenchOptions, BenchReport

__all__ = ["run_benchmark"]


def run_benchmark(path: str | os.PathLike, options: BenchOptions = BenchOptions(), *, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure the naive loader and fastload's at every worker count in `options` on the dataset at `path`.

    `progress(line)` is called before each loader runs (the CLI prints it to stderr).
    """
    from fastload.packing import PackedDataset
    from fastload.sampler import SamplerOptions

    dataset = CountingDataset(path)
    column, tokenizer = tokens_or_text(dataset, options.tokenizer)
    # The plan (and, for text, every document's token count: tokenized once, then cached) is built
    # here, untimed: it also checks that the dataset holds at least one batch.
    planned = PackedDataset(dataset, seq_len=options.seq_len, column=column, tokenizer=tokenizer, eos_id=options.eos_id, sampling=SamplerOptions(seed=options.seed))
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
                    return naive_loader(dataset, column=column, tokenizer=tokenizer, eos_id=eos_id,
                                         docs_per_batch=docs_per_batch, options=options, num_workers=num_workers)
            else:
                def make(num_workers=num_workers):
                    return fastload_loader(dataset, column=column, tokenizer=tokenizer, doc_lengths=doc_lengths, options=options, num_workers=num_workers)
            runs = []
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*pin_memory.*")
                for i in range(options.warmup + options.repeats):
                    dataset._reset_handles()  # each run opens the shards afresh, as a new training job would
                    run = one_run(make, dataset.counter, num_batches=num_batches)
                    if i >= options.warmup:
                        runs.append(run)
            results.append(summarize(loader, num_workers, runs, num_batches=num_batches, bytes_per_token=bytes_per_token))
    return BenchReport(
        dataset=str(path), column=column, tokenized_on_the_fly=tokenizer is not None, num_documents=len(doc_lengths),
        dataset_tokens=dataset_tokens, dataset_bytes=dataset_bytes, num_blocks=dataset.num_blocks, options=options,
        results=tuple(results), machine=machine_info(),
    )
