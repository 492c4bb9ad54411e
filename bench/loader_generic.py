"""Generic loader benchmark: the same map-style dataset through torch's DataLoader and fastload's.

    python bench/loader_generic.py [--rounds 3] [--repeats 3] [--json bench/results/loader_generic.json]

Two workloads, as in the loader issue, with `pin_memory=True` (a no-op with
a warning on machines without CUDA, for both loaders):
  (a) images: 3x224x224 uint8 items (plus an int label), batch 64;
  (b) tokens: 1024 int64 items, batch 16.
Items come from an in-memory array (the dataset itself costs almost nothing)
so the table measures the loaders: worker start, collation, hand-off, and the
main process's share.
A third, `--workloads shards`, reads rows of a `fastload.Dataset` instead
(1024 int64 tokens a row, lz4, 1 MiB blocks, 64 blocks, written once to
bench/.cache/), batch 16, `shuffle=True`: what the loaders' default order
and block cache cost when every row is decoded from a compressed block.

Every (workload, loader, num_workers) runs in a fresh child process (see
`_harness.run_child`), `--rounds` times, the cases in a rotating order. In
a child: one warm-up epoch, then `--repeats` timed epochs, each a fresh
iterator (workers start each epoch, as they do by default). Figures are
medians over rounds of the per-child medians; min–max spans every epoch. Reported: batches/s (median of the epochs, min–max), time to the
first batch, main-process CPU time inside `next()` per batch (the time the
training loop's thread spends on loading — `time.thread_time`, so waiting
for workers is not counted) and its wall time, and the peak of the summed
proportional set size (PSS) of the main process and its workers, which
counts shared memory once rather than once per process (sampled every
0.1 s; the sampling time is not counted in batches/s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_main, format_table, machine_info, run_child, status, write_json  # noqa: E402

WORKLOADS = {
    "images": {"shape": (3, 224, 224), "dtype": "uint8", "batch_size": 64, "items": 64 * 40, "distinct": 256},
    "tokens": {"shape": (1024,), "dtype": "int64", "batch_size": 16, "items": 16 * 300, "distinct": 1024},
    "shards": {"shape": (1024,), "dtype": "int64", "batch_size": 16, "items": 128 * 64},
}
SHARDS = Path(__file__).resolve().parent / ".cache" / "loader_generic_shards_lz4"


def _write_shards() -> None:
    """The `shards` workload's dataset: 8,192 rows of 1024 int64 tokens (8 KiB), lz4, 128 rows a block."""
    if (SHARDS / "index.json").exists():
        return
    import numpy as np
    import pyarrow as pa

    from fastload.format import Column, DatasetWriter, Schema, WriteOptions

    schema = Schema((Column("tokens", "ndarray", "int64", (1024,)),))
    tokens = np.random.default_rng(0).integers(0, 50_000, size=(WORKLOADS["shards"]["items"], 1024))
    column = pa.FixedSizeListArray.from_arrays(pa.array(tokens.reshape(-1)), 1024)
    with DatasetWriter(SHARDS, schema, options=WriteOptions(block_rows=128, compression="lz4")) as writer:
        writer.write(pa.record_batch([column], schema=schema.arrow_schema()))


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _child(workload: str, loader_name: str, num_workers: int, repeats: int) -> dict:
    import os
    import warnings

    import numpy as np
    import torch

    import fastload

    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    spec = WORKLOADS[workload]

    class InMemory(torch.utils.data.Dataset):
        def __init__(self):
            rng = np.random.default_rng(0)
            high = 256 if spec["dtype"] == "uint8" else 50_000
            self.data = rng.integers(0, high, size=(spec["distinct"], *spec["shape"])).astype(spec["dtype"])

        def __len__(self):
            return spec["items"]

        def __getitem__(self, i):
            return torch.from_numpy(self.data[i % spec["distinct"]]), i

    cls = torch.utils.data.DataLoader if loader_name == "torch" else fastload.DataLoader
    dataset = fastload.Dataset(SHARDS) if workload == "shards" else InMemory()
    loader = cls(dataset, batch_size=spec["batch_size"], shuffle=True, num_workers=num_workers, pin_memory=True, **({"prefetch_factor": 2} if num_workers else {}))
    epochs = []
    peak_pss = 0
    for epoch in range(repeats + 1):
        started = time.perf_counter()
        iterator = iter(loader)
        first_batch_s = None
        cpu_s = wall_in_next_s = sampling_s = 0.0
        last_sample = started - 1.0  # sample at the first batch, then every 0.1 s
        batches = 0
        while True:
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            cpu_s += time.thread_time() - c0
            wall_in_next_s += time.perf_counter() - w0
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - started
            batches += 1
            if time.perf_counter() - last_sample >= 0.1:  # reading smaps costs ~ms: sample by time, off the clock
                sample_started = time.perf_counter()
                workers = getattr(iterator, "_workers", [])
                pss = _pss_bytes(os.getpid()) + sum(_pss_bytes(p.pid) for p in workers)
                peak_pss = max(peak_pss, pss)
                last_sample = time.perf_counter()
                sampling_s += last_sample - sample_started
            del batch
        elapsed = time.perf_counter() - started - sampling_s
        if epoch:  # epoch 0 warms up
            epochs.append(
                {
                    "batches_per_s": batches / elapsed,
                    "first_batch_s": first_batch_s,
                    "main_cpu_us_per_batch": 1e6 * cpu_s / batches,
                    "main_wall_us_per_batch": 1e6 * wall_in_next_s / batches,
                }
            )
    summary = {key: statistics.median(e[key] for e in epochs) for key in epochs[0]}
    summary["batches_per_s_min"] = min(e["batches_per_s"] for e in epochs)
    summary["batches_per_s_max"] = max(e["batches_per_s"] for e in epochs)
    summary["peak_pss_mb"] = peak_pss / 2**20
    return summary


def _median_of_runs(runs: list[dict]) -> dict:
    """The median of each figure over the children's runs (each itself a median of epochs)."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    out = {key: statistics.median(r[key] for r in good) for key in good[0]}
    out["batches_per_s_min"] = min(r["batches_per_s_min"] for r in good)
    out["batches_per_s_max"] = max(r["batches_per_s_max"] for r in good)
    out["peak_pss_mb"] = max(r["peak_pss_mb"] for r in good)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per child process")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per case, in rotating order")
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--workloads", default="images,tokens")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "LOADER", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, loader_name, workers = args.child
        child_main(lambda: _child(workload, loader_name, int(workers), args.repeats))
        return

    if "shards" in args.workloads.split(","):
        _write_shards()
    configs = [(w, int(k), name) for w in args.workloads.split(",") for k in args.workers.split(",") for name in ("torch", "fastload")]
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    for round_id in range(args.rounds):  # rounds rotate the order, so drifts of a shared machine hit every case
        shift = round_id % len(configs)
        for workload, workers, loader_name in configs[shift:] + configs[:shift]:
            argv = [sys.executable, __file__, "--repeats", str(args.repeats), "--child", workload, loader_name, str(workers)]
            runs[(workload, workers, loader_name)].append(run_child(argv, timeout_s=900))
            print(f"  round {round_id + 1}: {workload:<7} {loader_name:<9} workers={workers}", file=sys.stderr, flush=True)
    results = [{"workload": w, "workers": k, "loader": name, **_median_of_runs(runs[(w, k, name)])} for w, k, name in configs]
    for r in results:
        r["status"] = status(r)

    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["workload"], str(r["workers"]), r["loader"], f"{r['status']}: " + r["error"].splitlines()[-1][:60], "", "", "", "", ""])
            continue
        baseline = next(b for b in results if b["workload"] == r["workload"] and b["workers"] == r["workers"] and b["loader"] == "torch")
        ratio = r["batches_per_s"] / baseline["batches_per_s"] if "batches_per_s" in baseline else float("nan")
        rows.append(
            [
                r["workload"],
                str(r["workers"]),
                r["loader"],
                f"{r['batches_per_s']:.1f} ({r['batches_per_s_min']:.1f}-{r['batches_per_s_max']:.1f})",
                f"{ratio:.2f}x",
                f"{1e3 * r['first_batch_s']:.0f}",
                f"{r['main_cpu_us_per_batch']:.0f}",
                f"{r['main_wall_us_per_batch']:.0f}",
                f"{r['peak_pss_mb']:.0f}",
            ]
        )
    header = ["workload", "workers", "loader", "batches/s (min-max)", "vs torch", "first batch ms", "main CPU µs/batch", "main wall µs/batch", "peak PSS MB"]
    print(f"median over {args.rounds} rounds of the median of {args.repeats} epochs after a warm-up; pin_memory=True; machine: {machine_info()}")
    print(format_table(header, rows))
    if args.json:
        write_json(args.json, {"machine": machine_info(), "results": results})


if __name__ == "__main__":
    main()
