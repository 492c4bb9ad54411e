"""The trainer's step time and data wait: the tiny GPT fed by fastload vs a naive torch loader, side by side.

    python bench/train.py [--steps 30] [--warmup-steps 10] [--batch-size 16] [--repeats 3] [--quick]
                          [--json bench/results/train.json]

The task: train `fastload.train`'s tiny model (2 layers x 128, 128-token rows,
the shipped 16k vocabulary, fp32 on CPU) for a fixed number of steps on the
demo corpus (375 documents, 1.8 M tokens), with the same loop
(`fastload.train.train`) and only the training loader swapped:

  fastload   `fastload.DataLoader(PackedDataset(demo, seq_len=128), batch_size=B,
             shuffle=True, num_workers=W)`: documents + EOS packed into rows by a
             Numba kernel inside the workers, straight into shared memory.
  naive      `torch.utils.data.DataLoader` over an `IterableDataset` of the
             demo corpus as JSON Lines: each worker takes its share of the
             shuffled documents, `json.loads` + HF `tokenizers` `encode` per
             document (as in bench/loader_tokens.py), appends EOS to a token
             buffer and cuts B rows of 129 tokens from it, computing labels,
             position_ids and document_ids with numpy per row: the same dict
             of four (B, 128) tensors. (A map-style dataset with a packing
             collate, as loader_tokens.py has, needs ~0.4 documents a batch
             here: its carry-over would grow without bound.)

Each contender runs in a child process of its own (`_harness.run_child`),
with 2 and with 0 workers, `--repeats` times, the contenders interleaved
(the order rotated each round) so that changes in the shared machine's load
hit them alike. In a run, the first `--warmup-steps` steps (worker start,
first batches, allocator warm-up) are not counted; over the `--steps` after
them it measures mean step time, tokens/s (B x 128 tokens a step), the mean
wall time per step inside `next(loader)` and its share of the step
(`data_wait_pct`), from the trainer's own metrics. The table gives the
median of the runs, the step time's min-max, and the worst run's
data_wait_pct. Validation and
checkpoints are off: only training steps are timed. The same seed gives both
contenders the same initial weights; their batches differ (different
packing), so their losses are not compared here.

On a 2-core machine the loader's workers share the cores with the model's
two compute threads: a loader that burns CPU in its workers slows the
training step even when the step never waits for a batch; that shows up in
step time and tokens/s, not in data_wait_pct.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH)
from _harness import child_main, format_table, machine_info, run_child, write_json  # noqa: E402

# bench/ holds modules named like the packages the peers import (bench/tokenizers.py vs HF `tokenizers`)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_BENCH)]

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
TOKENIZER_JSON = REPO / "fastload" / "assets" / "tokenizer" / "tokenizer.json"
EOS_ID = 0  # `<|endoftext|>` in the shipped vocabulary
SEQ_LEN = 128  # the tiny model's block size
CHILD_TIMEOUT_S = 1800
CONTENDERS = {  # name: (label, loader kind, workers)
    "fastload-2": ("fastload PackedDataset + DataLoader", "fastload", 2),
    "naive-2": ("naive: JSONL + HF tokenizers, packed in Python", "naive", 2),
    "fastload-0": ("fastload PackedDataset + DataLoader", "fastload", 0),
    "naive-0": ("naive: JSONL + HF tokenizers, packed in Python", "naive", 0),
}


# ---------------------------------------------------------------- preparation (untimed, cached)


def prepare() -> tuple[Path, Path]:
    """The demo corpus as JSON Lines (for the naive loader) and as a tokenized fastload dataset."""
    import fastload
    from fastload.demo import demo_corpus_path

    CACHE.mkdir(parents=True, exist_ok=True)
    source = demo_corpus_path()
    jsonl = CACHE / "demo-corpus.jsonl"
    if not jsonl.exists() or jsonl.stat().st_mtime < source.stat().st_mtime:
        tmp = jsonl.with_name(".tmp-" + jsonl.name)
        with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.rename(jsonl)
    dataset = CACHE / "demo-corpus.fastload"
    try:
        fastload.Dataset(dataset)
    except fastload.FastloadError:  # missing, or written by an older fastload: (re)build
        fastload.convert(source, dataset, tokenizer="default", overwrite=True, quiet=True)
    return jsonl, dataset


# ---------------------------------------------------------------- the naive loader (built in the child)


def naive_loader(jsonl: Path, *, batch_size: int, workers: int, seed: int):
    """torch's DataLoader over an IterableDataset that reads, tokenizes and packs documents one by one in Python."""
    import numpy as np
    import torch

    row_len = SEQ_LEN + 1
    tokens_per_batch = batch_size * row_len
    offsets = []
    with open(jsonl, "rb") as f:
        position = 0
        for line in f:
            offsets.append(position)
            position += len(line)

    def make_batch(tokens):
        rows = tokens.reshape(batch_size, row_len)  # (B, T + 1)
        inputs = rows[:, :-1]  # (B, T)
        position_ids = np.empty_like(inputs)
        document_ids = np.empty(inputs.shape, dtype=np.int32)
        for r in range(batch_size):  # a new document starts after each EOS
            starts = np.concatenate([[0], np.flatnonzero(inputs[r, :-1] == EOS_ID) + 1])
            document_ids[r] = np.cumsum(np.isin(np.arange(SEQ_LEN), starts)) - 1
            position_ids[r] = np.arange(SEQ_LEN) - starts[document_ids[r]]
        return {
            "input_ids": torch.from_numpy(np.ascontiguousarray(inputs)),
            "labels": torch.from_numpy(np.ascontiguousarray(rows[:, 1:])),
            "position_ids": torch.from_numpy(position_ids),
            "document_ids": torch.from_numpy(document_ids),
        }

    class PackedJsonl(torch.utils.data.IterableDataset):
        """Each worker: its share of the shuffled documents, epoch after epoch; JSON line -> HF tokenizers -> + EOS
        -> a token buffer, cut into batches of B rows of SEQ_LEN + 1 tokens."""

        def __iter__(self):
            from tokenizers import Tokenizer

            info = torch.utils.data.get_worker_info()
            worker_id, num_workers = (info.id, info.num_workers) if info else (0, 1)
            tokenizer = Tokenizer.from_file(str(TOKENIZER_JSON))
            buffer = np.zeros(0, dtype=np.int64)
            with open(jsonl, "rb") as f:
                for epoch in range(1 << 30):
                    for i in np.random.default_rng([seed, epoch]).permutation(len(offsets))[worker_id::num_workers]:
                        f.seek(offsets[i])
                        ids = tokenizer.encode(json.loads(f.readline())["text"]).ids
                        ids.append(EOS_ID)
                        buffer = np.concatenate([buffer, np.asarray(ids, dtype=np.int64)])
                        while len(buffer) >= tokens_per_batch:
                            yield make_batch(buffer[:tokens_per_batch])
                            buffer = buffer[tokens_per_batch:]

    return torch.utils.data.DataLoader(PackedJsonl(), batch_size=None, num_workers=workers, persistent_workers=workers > 0)


# ---------------------------------------------------------------- one contender (in the child)


def child(name: str, *, steps: int, warmup_steps: int, batch_size: int) -> dict:
    import torch

    from fastload.train import TrainConfig, train

    jsonl, dataset = prepare()
    _, kind, workers = CONTENDERS[name]
    config = TrainConfig(model="tiny", steps=warmup_steps + steps, batch_size=batch_size, workers=workers, validation=0.0,
                         log_every=warmup_steps, warmup_steps=warmup_steps, out=None, plot=False, device="cpu")
    loader = naive_loader(jsonl, batch_size=batch_size, workers=workers, seed=config.seed) if kind == "naive" else None
    if steps % warmup_steps:
        raise SystemExit("--steps must be a multiple of --warmup-steps (one metrics record per warm-up-sized interval)")
    started = time.perf_counter()
    result = train(dataset, config, loader=loader)
    wall_s = time.perf_counter() - started
    timed = [r for r in result.records if r["kind"] == "train"][1:]  # the first interval is the warm-up
    step_ms = sum(r["step_time_ms"] for r in timed) / len(timed)
    wait_ms = sum(r["data_wait_ms"] for r in timed) / len(timed)
    return {
        "steps": steps,
        "step_ms": step_ms,
        "tokens_per_s": batch_size * SEQ_LEN * 1000 / step_ms,
        "data_wait_ms": wait_ms,
        "data_wait_pct": 100 * wait_ms / step_ms,
        "final_loss": timed[-1]["loss"],
        "wall_s": wall_s,
        "torch_threads": torch.get_num_threads(),
    }


def _summarise(name: str, runs: list[dict]) -> dict:
    """The median over the repeats of each figure, with the step time's min-max."""
    label, _, workers = CONTENDERS[name]
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"name": name, "label": label, "workers": workers, "error": runs[-1]["error"]}
    median = lambda key: statistics.median(r[key] for r in good)  # noqa: E731
    return {
        "name": name, "label": label, "workers": workers, "repeats": len(good),
        "step_ms": median("step_ms"), "step_ms_min": min(r["step_ms"] for r in good), "step_ms_max": max(r["step_ms"] for r in good),
        "tokens_per_s": median("tokens_per_s"), "data_wait_ms": median("data_wait_ms"), "data_wait_pct": median("data_wait_pct"),
        "data_wait_pct_max": max(r["data_wait_pct"] for r in good), "runs": runs,
    }


def _table(results: list[dict]) -> str:
    header = ["contender", "workers", "step ms (min-max)", "tokens/s", "vs naive", "data wait ms/step", "data_wait_pct", "worst run"]
    naive = {r["workers"]: r for r in results if r["name"].startswith("naive") and "error" not in r}
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["label"], str(r["workers"]), "FAILED", r["error"][:60], "", "", "", ""])
            continue
        base = naive.get(r["workers"])
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "-"
        rows.append([r["label"], str(r["workers"]), f"{r['step_ms']:.0f} ({r['step_ms_min']:.0f}-{r['step_ms_max']:.0f})", f"{r['tokens_per_s']:,.0f}",
                     ratio, f"{r['data_wait_ms']:.2f}", f"{r['data_wait_pct']:.2f}%", f"{r['data_wait_pct_max']:.2f}%"])
    return format_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per contender, after the warm-up steps")
    parser.add_argument("--warmup-steps", type=int, default=10, help="untimed steps first (also the metrics interval)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows of 128 tokens per step")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each contender, interleaved; the table gives medians")
    parser.add_argument("--quick", action="store_true", help="10 timed steps after 5, one repeat (about a minute)")
    parser.add_argument("--only", default=None, help=f"comma-separated contenders: {', '.join(CONTENDERS)}")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results (default: bench/results/train[-quick].json)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup_steps, args.repeats = 10, 5, 1
    if args.steps < 1 or args.warmup_steps < 1 or args.steps % args.warmup_steps or args.repeats < 1:
        parser.error("need --steps >= 1, --warmup-steps >= 1, --steps a multiple of --warmup-steps, and --repeats >= 1")
    if args.child:
        child_main(lambda: child(args.child, steps=args.steps, warmup_steps=args.warmup_steps, batch_size=args.batch_size))
        return

    names = [n.strip() for n in args.only.split(",")] if args.only else list(CONTENDERS)
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s) {sorted(unknown)}; valid: {', '.join(CONTENDERS)}")
    prepare()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}  # HF tokenizers in forked workers: one thread each
    machine = machine_info()
    print(f"tiny GPT, batches of {args.batch_size} x {SEQ_LEN}, {args.warmup_steps} warm-up + {args.steps} timed steps; "
          f"{machine['cpus']} CPUs, load average {machine['load_average_1m']}", file=sys.stderr, flush=True)
    runs: dict[str, list] = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]  # rotate: drift in the machine's load hits all alike
        for name in order:
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--steps", str(args.steps),
                    "--warmup-steps", str(args.warmup_steps), "--batch-size", str(args.batch_size)]
            started = time.perf_counter()
            result = run_child(argv, timeout_s=CHILD_TIMEOUT_S, env=env)
            runs[name].append({**result, "load_average_1m": round(os.getloadavg()[0], 2)})
            status = "FAILED: " + result["error"] if "error" in result else f"{result['step_ms']:.0f} ms/step, data wait {result['data_wait_pct']:.2f}%"
            print(f"  [{repeat + 1}/{args.repeats}] {name:<12} {status} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    results = [_summarise(name, runs[name]) for name in names]
    machine["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(f"\ntrain: fastload.train's tiny GPT (2 x 128, fp32, CPU) on the demo corpus, batches of {args.batch_size} x {SEQ_LEN}; "
          f"each run: means over {args.steps} steps after {args.warmup_steps} warm-up steps; medians of {args.repeats} interleaved runs\n")
    print(_table(results))
    print(f"\nload average (1 min) {machine['load_average_1m']} at the start, {machine['load_average_1m_at_end']} at the end on {machine['cpus']} CPUs")
    out = args.json or REPO / "bench" / "results" / ("train-quick.json" if args.quick else "train.json")
    write_json(out, {"benchmark": "train", "machine": machine, "steps": args.steps, "warmup_steps": args.warmup_steps, "repeats": args.repeats,
                     "batch_size": args.batch_size, "seq_len": SEQ_LEN, "results": results})
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
