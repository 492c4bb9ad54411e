"""`run_benchmark`: every loader and worker count, warm-up and repeats, into a `BenchReport`."""

from __future__ import annotations

import os
import warnings
from typing import Callable

from fastload.benchmark.loaders import CountingDataset, fastload_loader, naive_loader, new_counter, tokens_or_text
from fastload.benchmark.measure import one_run, summarize
from fastload.benchmark.proc import machine_info
from fastload.benchmark.report import LOADERS, BenchOptions, BenchReport

__all__ = ["run_benchmark"]


def run_benchmark(path, options: BenchOptions = BenchOptions(), *, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure the naive loader and fastload's at every worker count in `options` on the dataset at `path`,
    or on a `fastload.Mixture` of datasets (the naive loader then draws documents by weight, as torch's
    `WeightedRandomSampler` does).

    `progress(line)` is called before each loader runs (the CLI prints it to stderr).
    """
    from fastload.packing import PackedDataset
    from fastload.sampler import Mixture, SamplerOptions

    cache = {"cache_dir": options.cache_dir, "cache_bytes": options.cache_bytes}  # used by datasets in object storage only
    if isinstance(path, Mixture):
        counter = new_counter()  # one count of block bytes read, over every source
        sources = {name: CountingDataset(getattr(d, "path", d), counter=counter, **cache) for name, d in path.datasets.items()}
        target = Mixture({name: (sources[name], path.weights[name]) for name in path.names}, on_exhausted=path.on_exhausted, schedule=dict(path.schedule))
        datasets, weights = list(sources.values()), [path.weights[name] for name in path.names]
        label = "mixture " + ", ".join(f"{name}={str(getattr(d, 'path', d))}:{path.weights[name]}" for name, d in path.datasets.items())
    else:
        datasets, weights, label = [CountingDataset(path, **cache)], None, str(path)
        target = datasets[0]
    column, tokenizer = tokens_or_text(datasets[0], options.tokenizer)
    # The plan (and, for text, every document's token count: tokenized once, then cached) is built
    # here, untimed: it also checks that the dataset holds at least one batch.
    planned = PackedDataset(target, seq_len=options.seq_len, column=column, tokenizer=tokenizer, eos_id=options.eos_id, sampling=SamplerOptions(seed=options.seed))
    lengths = [s.doc_lengths for s in planned.sources] if weights is not None else [planned.doc_lengths]
    doc_lengths = lengths[0] if weights is None else None
    eos_id = planned.eos_id
    epoch_batches = len(planned.batch_sampler(options.batch_size, shuffle=True))
    num_batches = max(1, min(options.steps, epoch_batches - 1))  # within the first epoch when it is long enough
    num_documents = sum(len(x) for x in lengths)
    dataset_tokens = sum(int(x.sum()) + len(x) for x in lengths)  # with one EOS each
    dataset_bytes = sum(int(sum(int(info.block_bytes.sum()) for info in d.index.shards)) for d in datasets)
    row_tokens = options.seq_len + 1
    # dataset bytes per delivered input token (a row of seq_len inputs uses seq_len + 1 tokens of the stream)
    bytes_per_token = dataset_bytes / max(1, dataset_tokens) * row_tokens / options.seq_len
    docs_per_batch = max(1, round(options.batch_size * row_tokens / max(1.0, dataset_tokens / max(1, num_documents))))
    del planned

    results = []
    for num_workers in options.workers:
        for loader in LOADERS:
            if progress is not None:
                progress(f"  {loader:<8} workers={num_workers}: {options.warmup} warm-up + {options.repeats} run(s) of {num_batches + 1} batches")
            if loader == "naive":
                def make(num_workers=num_workers):
                    return naive_loader(datasets, column=column, tokenizer=tokenizer, eos_id=eos_id, docs_per_batch=docs_per_batch,
                                        options=options, num_workers=num_workers, weights=weights)
            else:
                def make(num_workers=num_workers):
                    return fastload_loader(target, column=column, tokenizer=tokenizer, doc_lengths=doc_lengths, options=options, num_workers=num_workers)
            runs = []
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*pin_memory.*")
                for i in range(options.warmup + options.repeats):
                    for dataset in datasets:
                        dataset._reset_handles()  # each run opens the shards afresh, as a new training job would
                    run = one_run(make, datasets[0].counter, num_batches=num_batches)
                    if i >= options.warmup:
                        runs.append(run)
            results.append(summarize(loader, num_workers, runs, num_batches=num_batches, bytes_per_token=bytes_per_token))
    return BenchReport(
        dataset=label, column=column, tokenized_on_the_fly=tokenizer is not None, num_documents=num_documents,
        dataset_tokens=dataset_tokens, dataset_bytes=dataset_bytes, num_blocks=sum(d.num_blocks for d in datasets), options=options,
        results=tuple(results), machine=machine_info(),
    )
