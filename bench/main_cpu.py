"""What loading costs the training process: its CPU time per batch at a 20 ms training step.

    python bench/main_cpu.py [--rounds 3] [--batches 150] [--workers 0,1,2] [--json bench/results/main_cpu.json]

A training loop that takes 20 ms a step (a `time.sleep`, standing in for the
GPU's work) calls `next(loader)` once a step. With workers far enough ahead,
every batch is ready when asked for, so what `next()` costs is the hand-off
alone: the goal (issue 15) is under 50 µs of CPU per batch. Three workloads:

  tokens         `PackedDataset` batches of 16 x 1024 (four int64/int32 arrays),
                 from a synthetic pre-tokenized dataset (uint16, 20 M tokens)
  images         `ArrayDataset` batches of 64 x 3 x 224 x 224 uint8 (and an
                 int64 label), from a synthetic dataset of 2,560 images
  images-generic the same images through torch's map-style protocol: a
                 `torch.utils.data.Dataset` whose items are (3, 224, 224)
                 uint8 tensors, batched by the default collate

Each case runs in a fresh child process, `--rounds` times in a rotating order;
a child times `--batches` steps after 10 untimed ones. Reported: the median
of the children's figures for the training thread's CPU time inside `next()`
(`time.thread_time`): its mean per batch (what the goal counts: the CPU a
step pays on average), median and 90th percentile (batches that send or
receive a group of tasks pay for the group); and the CPU time of the whole
main process during `next()` per step (all its threads, `resource.getrusage`),
so that work moved to a background thread would show.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_main, format_table, machine_info, run_child, write_json  # noqa: E402

STEP_S = 0.020
WARM_STEPS = 10
WORKLOADS = ("tokens", "images", "images-generic")


def _tokens_dataset(folder: Path) -> Path:
    import numpy as np
    import pyarrow as pa

    from fastload.format import Column, DatasetWriter, Schema, WriteOptions

    path = folder / "tokens"
    if (path / "index.json").exists():
        return path
    schema = Schema((Column("tokens", "tokens", "uint16"),))
    rng = np.random.default_rng(0)
    with DatasetWriter(path, schema, options=WriteOptions(block_rows=256)) as writer:
        for _ in range(8):  # 8 x 512 documents of ~5,000 tokens: ~20 M tokens
            lengths = rng.integers(500, 9_500, size=512)
            docs = [rng.integers(1, 50_000, size=int(n), dtype=np.uint16) for n in lengths]
            writer.write(pa.record_batch([pa.array(docs, pa.list_(pa.uint16()))], schema=schema.arrow_schema()))
    return path


def _images_dataset(folder: Path) -> Path:
    import numpy as np
    import pyarrow as pa

    from fastload.format import Column, DatasetWriter, Schema, WriteOptions

    path = folder / "images"
    if (path / "index.json").exists():
        return path
    schema = Schema((Column("image", "ndarray", "uint8", (3, 224, 224)), Column("label", "scalar", "int64")))
    rng = np.random.default_rng(0)
    size = 3 * 224 * 224
    with DatasetWriter(path, schema, options=WriteOptions(block_rows=64)) as writer:
        for start in range(0, 2560, 256):
            images = rng.integers(0, 256, size=256 * size, dtype=np.uint8)
            labels = np.arange(start, start + 256, dtype=np.int64)
            writer.write(pa.record_batch([pa.FixedSizeListArray.from_arrays(pa.array(images), size), pa.array(labels)], schema=schema.arrow_schema()))
    return path


def _loader(workload: str, workers: int, folder: Path):
    import numpy as np
    import torch

    import fastload

    if workload == "tokens":
        return fastload.DataLoader(fastload.PackedDataset(_tokens_dataset(folder), seq_len=1024, eos_id=0), batch_size=16, shuffle=True, num_workers=workers)
    if workload == "images":
        return fastload.DataLoader(fastload.ArrayDataset(_images_dataset(folder)), batch_size=64, shuffle=True, num_workers=workers)

    class InMemoryImages(torch.utils.data.Dataset):
        def __init__(self):
            self.images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(256, 3, 224, 224), dtype=np.uint8))

        def __len__(self):
            return 2560

        def __getitem__(self, i):
            return self.images[i % 256], i

    return fastload.DataLoader(InMemoryImages(), batch_size=64, shuffle=True, num_workers=workers)


def _child(workload: str, workers: int, batches: int, folder: Path) -> dict:
    import resource

    loader = _loader(workload, workers, folder)
    thread_cpu = []
    process_cpu = 0.0
    iterator = iter(loader)
    steps = 0
    while steps < WARM_STEPS + batches:
        time.sleep(STEP_S)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        before_process = usage.ru_utime + usage.ru_stime
        before = time.thread_time()
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        spent = time.thread_time() - before
        usage = resource.getrusage(resource.RUSAGE_SELF)
        del batch
        if steps >= WARM_STEPS:
            thread_cpu.append(spent)
            process_cpu += usage.ru_utime + usage.ru_stime - before_process
        steps += 1
    thread_cpu.sort()
    return {
        "thread_cpu_mean_us": 1e6 * statistics.fmean(thread_cpu),
        "thread_cpu_us": 1e6 * statistics.median(thread_cpu),
        "thread_cpu_p90_us": 1e6 * thread_cpu[int(0.9 * (len(thread_cpu) - 1))],
        "process_cpu_us": 1e6 * process_cpu / len(thread_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="child processes per case, in rotating order")
    parser.add_argument("--batches", type=int, default=150, help="timed steps per child")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--data", type=Path, default=None, help="folder for the synthetic datasets (default: a temporary one)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(lambda: _child(args.child[0], int(args.child[1]), args.batches, args.data))
        return

    with tempfile.TemporaryDirectory(prefix="fastload-main-cpu-") as tmp:
        folder = args.data or Path(tmp)
        _tokens_dataset(folder), _images_dataset(folder)  # made once, outside the timed children
        configs = [(w, int(k)) for w in args.workloads.split(",") for k in args.workers.split(",")]
        runs: dict[tuple, list[dict]] = {c: [] for c in configs}
        for round_id in range(args.rounds):
            shift = round_id % len(configs)
            for workload, workers in configs[shift:] + configs[:shift]:
                argv = [sys.executable, __file__, "--batches", str(args.batches), "--data", str(folder), "--child", workload, str(workers)]
                runs[(workload, workers)].append(run_child(argv, timeout_s=900))
                print(f"  round {round_id + 1}: {workload:<15} workers={workers}", file=sys.stderr, flush=True)
    results = []
    for (workload, workers), got in runs.items():
        good = [r for r in got if "error" not in r]
        if not good:
            results.append({"workload": workload, "workers": workers, "error": got[0]["error"]})
            continue
        results.append({"workload": workload, "workers": workers, **{k: statistics.median(r[k] for r in good) for k in good[0]}})
    rows = [
        [r["workload"], str(r["workers"]), "error: " + r["error"].splitlines()[-1][:60], "", "", ""]
        if "error" in r
        else [r["workload"], str(r["workers"]), f"{r['thread_cpu_mean_us']:.0f}", f"{r['thread_cpu_us']:.0f}", f"{r['thread_cpu_p90_us']:.0f}", f"{r['process_cpu_us']:.0f}"]
        for r in results
    ]
    machine = machine_info()
    print(f"\nmain_cpu: CPU per batch in the training process at a {STEP_S * 1e3:.0f} ms step; median of {args.rounds} children x {args.batches} steps; {machine['cpus']} CPUs\n")
    print(format_table(["workload", "workers", "next() CPU µs (mean)", "median", "p90", "main process CPU µs/step"], rows))
    if args.json:
        write_json(args.json, {"machine": machine, "step_s": STEP_S, "results": results})
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
