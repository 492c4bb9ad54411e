"""A check on one CUDA GPU that the pinned buffer pool does what pool.py says: one command, a table per check.

    python bench/gpu_check.py                  # about 1-2 minutes; exit status 1 if a check fails
    python bench/gpu_check.py --quick          # smaller copies and fewer repeats (well under a minute)
    python bench/gpu_check.py --json out.json  # also write every row as JSON

Without CUDA it prints one line saying so and exits 0. The checks:

  1 registered  `BufferPool(pin=True)` registers its arenas (`cudaHostRegister`): a tensor over a
                leased slot, and every tensor of a `fastload.DataLoader(pin_memory=True)` batch,
                is page-locked by `Tensor.is_pinned()` (which asks `cudaPointerGetAttributes`);
                a pageable tensor, asked the same, says no.
  2 bandwidth   host-to-device GB/s of a 64 MiB copy (CUDA events, median of repeats) from a
                pool slot, from pageable memory and from torch's `pin_memory()`; the slot must
                reach 0.8x torch's pinned figure.
  3 overlap     copies from a slot (`non_blocking=True`, a stream of their own) overlap a matmul
                loop on another stream: each alone, then both; overlap = time saved / the
                shorter of the two.
  4 slot_reuse  a real `fastload.DataLoader(pin_memory=True, num_workers=2)`: each batch is sent
                `.to("cuda", non_blocking=True)` behind a GPU sleep (so its copy is still queued)
                and dropped at once, which returns its slot; checksums computed on the GPU must
                equal those of the same batches read by a `num_workers=0` loader. A control run
                with a pool that ignores the CUDA events pool.py waits for shows whether the race
                can happen at all on this machine (informational, never a failure).
  5 trainer     `fastload.train` (the tiny GPT, `fastload train --config tiny`) for 200 steps on
                the GPU: steps/s and the share of step time spent waiting in `next(loader)`.

Data for checks 4 and 5 is made in a temporary folder (the shipped demo corpus,
tokenized; nothing is downloaded). Verdicts are PASS, WARN (works, but a
figure is off what it should be; says why) or FAIL; the summary fails if any
check fails.

Layout: the arithmetic and the verdicts come first, plain Python that the tests
(`tests/bench/test_gpu_check.py`) run on made-up figures; the CUDA
measurements after them are kept short. Check 4 takes its device operations
as a parameter (`DeviceOps`), so the tests run it, DataLoader and all, on the CPU.
"""


from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

_BENCH = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH)
from _check_results import (  # noqa: E402
    CheckResult,
    bandwidth_verdict,
    failed,
    format_results,
    gb_per_s,
    iterations_to_cover,
    overall_verdict,
    overlap_fraction,
    overlap_verdict,
    train_throughput,
    trainer_verdict,
    warning_note,
)
from _harness import machine_info, write_json  # noqa: E402
from _slot_reuse import check_slot_reuse, check_slot_reuse_control, cuda_ops  # noqa: E402

# bench/ holds modules named like the packages the peers import (bench/tokenizers.py vs HF `tokenizers`)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_BENCH)]

SKIP_LINE = "gpu_check: skipped — no CUDA device (torch.cuda.is_available() is False)"
MIB = 1 << 20
SLEEP_CYCLES = 10_000_000  # GPU sleep queued ahead of each copy in check 4: ~5 ms at the H200's ~2 GHz SM clock
MAX_IN_FLIGHT = 6  # batches whose copies check 4 leaves pending: more than the ~3 batches a freed slot waits to be refilled


# ---------------------------------------------------------------- data for checks 1, 4 and 5


class IndexRows:
    """Map-style dataset: row i is the int64 run `i * row_len ... (i + 1) * row_len - 1`, so every batch's content is known.

    Plain torch tensors through `default_collate`: fastload's workers stack
    them straight into the slot (`workers/collate.py`).
    """

    def __init__(self, num_rows: int, row_len: int):
        self.num_rows, self.row_len = num_rows, row_len

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, i: int):
        import torch

        return torch.arange(i * self.row_len, (i + 1) * self.row_len, dtype=torch.int64)  # (row_len,)


def tokenized_demo(folder: Path) -> Path:
    """The shipped demo corpus, tokenized with the shipped vocabulary, in `folder` (about 20 s with a cold Numba cache)."""
    import fastload
    from fastload.demo import demo_corpus_path

    out = folder / "demo-tokens"
    fastload.convert(demo_corpus_path(), out, tokenizer="default", overwrite=True, quiet=True)
    return out


def slot_reuse_cases(demo: Path, *, num_rows: int, row_len: int, batch_rows: int) -> dict[str, Callable]:
    """The two paths into a slot: torch's default collate (IndexRows) and batches computed in workers (PackedDataset)."""
    import fastload

    rows = IndexRows(num_rows, row_len)
    packed = fastload.PackedDataset(demo, seq_len=128)

    def index_rows(**kw):
        return fastload.DataLoader(rows, batch_size=batch_rows, shuffle=False, **kw)

    def packed_tokens(**kw):
        return fastload.DataLoader(packed, batch_size=16, shuffle=False, **kw)

    return {f"IndexRows {batch_rows} x {row_len} int64 (default collate)": index_rows, "PackedDataset 16 x 128 (computed in workers)": packed_tokens}


# ---------------------------------------------------------------- checks 1-3 and 5 (CUDA)


def check_registered(num_batches: int = 6) -> CheckResult:
    """Check 1: arenas are registered, so tensors over slots (and DataLoader batches) are pinned."""
    import torch

    import fastload
    from fastload.pool import BufferPool

    pool = BufferPool(pin=True)
    arena_id = pool.add_arena(num_slots=2, slot_bytes=MIB)
    slot = pool.acquire()
    over_slot = torch.frombuffer(pool.lease_buffer(*slot, used_bytes=MIB), dtype=torch.uint8)  # (MIB,)
    loader = fastload.DataLoader(IndexRows(num_batches * 8, 4096), batch_size=8, num_workers=2, pin_memory=True)
    pinned_batches = sum(bool(batch.is_pinned()) for batch in loader)
    found = {
        "arena registered (cudaHostRegister returned 0)": pool.arenas[arena_id].pinned,
        "tensor over a leased slot: is_pinned()": over_slot.is_pinned(),
        "DataLoader(pin_memory=True, num_workers=2): batches pinned": f"{pinned_batches} of {len(loader)}",
        "control: a pageable tensor is_pinned() (must be False)": torch.empty(16).is_pinned(),
    }
    ok = found["arena registered (cudaHostRegister returned 0)"] and found["tensor over a leased slot: is_pinned()"] \
        and pinned_batches == len(loader) and not found["control: a pageable tensor is_pinned() (must be False)"]
    del over_slot
    pool.close()
    return CheckResult("buffer pool arenas are registered with CUDA", "PASS" if ok else "FAIL", ["what", "found"],
                       [[k, str(v)] for k, v in found.items()], note="" if ok else "a slot or a batch is not page-locked",
                       figures={k: str(v) for k, v in found.items()})


def _copy_ms(dst, src, *, repeats: int, warmup: int) -> list[float]:
    """Milliseconds of each of `repeats` copies src -> dst, timed on the device with CUDA events."""
    import torch

    for _ in range(warmup):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src, non_blocking=True)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return samples


def _slot_tensor(pool, num_bytes: int):
    """A uint8 tensor over a freshly leased slot of `pool` (its first write faults nothing: pinning did)."""
    import torch

    return torch.frombuffer(pool.lease_buffer(*pool.acquire(), used_bytes=num_bytes), dtype=torch.uint8).fill_(1)  # (num_bytes,)


def check_bandwidth(*, num_bytes: int = 64 * MIB, repeats: int = 20, warmup: int = 3) -> CheckResult:
    """Check 2: host-to-device GB/s from a pool slot, pageable memory, and torch's pinned memory."""
    import torch

    from fastload.pool import BufferPool

    pool = BufferPool(pin=True)
    pool.add_arena(num_slots=1, slot_bytes=num_bytes)
    sources = {
        "pool slot (cudaHostRegister)": _slot_tensor(pool, num_bytes),
        "pageable (torch.ones)": torch.ones(num_bytes, dtype=torch.uint8),
        "torch pin_memory()": torch.ones(num_bytes, dtype=torch.uint8).pin_memory(),
    }
    dst = torch.empty(num_bytes, dtype=torch.uint8, device="cuda")
    figures, rows = {}, []
    for label, src in sources.items():
        samples = [gb_per_s(num_bytes, ms) for ms in _copy_ms(dst, src, repeats=repeats, warmup=warmup)]
        figures[label] = {"median_gb_s": statistics.median(samples), "min_gb_s": min(samples), "max_gb_s": max(samples)}
        rows.append([label, f"{figures[label]['median_gb_s']:.1f}", f"{min(samples):.1f}-{max(samples):.1f}"])
    slot, pageable, pinned = (figures[k]["median_gb_s"] for k in sources)
    for row, value in zip(rows, (slot, pageable, pinned)):
        row.append(f"{value / pinned:.2f}x")
    verdict, note = bandwidth_verdict(slot, pinned, pageable)
    del sources
    pool.close()
    return CheckResult(f"host-to-device bandwidth, {num_bytes // MIB} MiB copies, median of {repeats}", verdict,
                       ["source", "GB/s", "min-max", "vs torch pinned"], rows, note=note, figures=figures)


def _streams_ms(jobs: list[tuple[object, Callable[[], None]]]) -> float:
    """Milliseconds from a common start until every (stream, work) job is done; the jobs run side by side."""
    import torch

    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    done = []
    for stream, work in jobs:
        stream.wait_event(start)
        with torch.cuda.stream(stream):
            work()
            finished = torch.cuda.Event()
            finished.record()
        done.append(finished)
    for finished in done:
        torch.cuda.current_stream().wait_event(finished)
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def check_overlap(*, num_bytes: int = 64 * MIB, num_copies: int = 8, matmul_size: int = 4096, repeats: int = 5) -> CheckResult:
    """Check 3: non-blocking copies from slots overlap a matmul loop on another stream."""
    import torch

    from fastload.pool import BufferPool

    pool = BufferPool(pin=True)
    pool.add_arena(num_slots=1, slot_bytes=num_bytes)
    src = _slot_tensor(pool, num_bytes)
    dst = torch.empty(num_bytes, dtype=torch.uint8, device="cuda")
    a = torch.randn(matmul_size, matmul_size, device="cuda", dtype=torch.bfloat16)  # (n, n)
    b = torch.randn(matmul_size, matmul_size, device="cuda", dtype=torch.bfloat16)  # (n, n)
    compute_stream, copy_stream = torch.cuda.Stream(), torch.cuda.Stream()

    def copies():
        for _ in range(num_copies):
            dst.copy_(src, non_blocking=True)

    c = torch.empty_like(a)  # (n, n)

    def matmuls(n):
        def work():
            for _ in range(n):
                torch.mm(a, b, out=c)

        return work

    _streams_ms([(copy_stream, copies), (compute_stream, matmuls(4))])  # warm-up: cuBLAS handles, workspaces
    per_matmul_ms = _streams_ms([(compute_stream, matmuls(8))]) / 8
    copy_alone = statistics.median(_streams_ms([(copy_stream, copies)]) for _ in range(repeats))
    num_matmuls = iterations_to_cover(copy_alone, per_matmul_ms)  # compute about as long as the copies
    compute_alone = statistics.median(_streams_ms([(compute_stream, matmuls(num_matmuls))]) for _ in range(repeats))
    both = statistics.median(_streams_ms([(compute_stream, matmuls(num_matmuls)), (copy_stream, copies)]) for _ in range(repeats))
    fraction = overlap_fraction(compute_alone, copy_alone, both)
    verdict, note = overlap_verdict(fraction)
    del src
    pool.close()
    figures = {"compute_ms": compute_alone, "copy_ms": copy_alone, "both_ms": both, "overlap": fraction, "num_matmuls": num_matmuls}
    rows = [[f"{num_matmuls} matmuls {matmul_size}^2 bf16 alone", f"{compute_alone:.2f}"],
            [f"{num_copies} copies of {num_bytes // MIB} MiB from a slot alone", f"{copy_alone:.2f}"],
            ["both, on two streams", f"{both:.2f}"], ["overlap (time saved / shorter phase)", f"{fraction:.0%}"]]
    return CheckResult("non-blocking copies from a slot overlap compute", verdict, ["phase", "ms (median)"], rows, note=note, figures=figures)


def check_trainer(dataset: Path, *, device: str, steps: int = 200, batch_size: int = 16, log_every: int = 20) -> CheckResult:
    """Check 5: the tiny GPT trainer on `device` with 2 workers; steps/s and the data-wait share."""
    from fastload.train import TrainConfig, train

    config = TrainConfig(model="tiny", steps=steps, batch_size=batch_size, workers=2, validation=0.0, log_every=log_every,
                         out=None, plot=False, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        result = train(dataset, config, quiet=True)
        wall_s = time.perf_counter() - started
    timed = train_throughput(result.records)
    whole = train_throughput(result.records, skip_first=False)
    verdict, note = trainer_verdict(timed, steps_wanted=steps, steps_done=result.steps)
    rows = [[f"after the first {log_every} steps ({timed['steps']} steps)", f"{timed['steps_per_s']:.1f}", f"{timed['data_wait_fraction']:.2%}"],
            [f"all {whole['steps']} steps", f"{whole['steps_per_s']:.1f}", f"{whole['data_wait_fraction']:.2%}"],
            [f"wall clock, with start-up ({wall_s:.1f} s)", f"{steps / wall_s:.1f}", ""]]
    figures = {"timed": timed, "all": whole, "wall_s": wall_s, "batch_size": batch_size, "seq_len": 128}
    caught_note = warning_note(caught)
    return CheckResult(f"tiny GPT trainer, {steps} steps on {device}, batches {batch_size} x 128, 2 workers", verdict,
                       ["interval", "steps/s", "data wait"], rows, note=note + (f"; warnings: {caught_note}" if caught_note else ""), figures=figures)


# ---------------------------------------------------------------- the run


def run_checks(*, quick: bool, workdir: Path) -> list[CheckResult]:
    """Every check in turn; one that raises becomes a FAIL row and the others still run."""
    size = (16 if quick else 64) * MIB
    results = [
        _run_one("buffer pool arenas are registered with CUDA", check_registered),
        _run_one("host-to-device bandwidth", lambda: check_bandwidth(num_bytes=size, repeats=8 if quick else 20)),
        _run_one("non-blocking copies from a slot overlap compute", lambda: check_overlap(num_bytes=size, repeats=3 if quick else 5)),
    ]
    try:
        demo = tokenized_demo(workdir)
        cases = slot_reuse_cases(demo, num_rows=2048 if quick else 8192, row_len=16384, batch_rows=64)
    except Exception as exc:  # noqa: BLE001  (the failure of the checks that need the data)
        traceback.print_exc()
        return results + [failed("slot reuse never overwrites an in-flight copy", exc), failed("tiny GPT trainer", exc)]
    ops = cuda_ops(delay_cycles=SLEEP_CYCLES)
    results.append(_run_one("slot reuse never overwrites an in-flight copy", lambda: check_slot_reuse(cases, ops, max_in_flight=MAX_IN_FLIGHT)))
    results.append(_run_one("tiny GPT trainer", lambda: check_trainer(demo, device="cuda", steps=60 if quick else 200)))
    # Last: the control plants the very race the pool prevents; if it upsets the device, no other check is lost.
    first_case = next(iter(cases.values()))
    results.append(_run_one("control for check 4", lambda: check_slot_reuse_control(first_case, ops, max_in_flight=MAX_IN_FLIGHT), fail_as="WARN"))
    return results


def _run_one(name: str, fn: Callable[[], CheckResult], *, fail_as: str = "FAIL") -> CheckResult:
    started = time.perf_counter()
    print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001  (a check that raises is a FAIL row; the others still run)
        traceback.print_exc()
        result = failed(name, exc)
        result.verdict = fail_as
    result.figures["seconds"] = round(time.perf_counter() - started, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="16 MiB copies, fewer repeats and rows, 60 trainer steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(SKIP_LINE)
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastload-gpu-check-") as workdir:
        results = run_checks(quick=args.quick, workdir=Path(workdir))
    total_s = time.perf_counter() - started
    print(f"gpu_check on {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda}), {total_s:.0f} s\n")
    print(format_results(results))
    if args.json is not None:
        write_json(args.json, {"benchmark": "gpu_check", "machine": machine_info(), "device": torch.cuda.get_device_name(),
                               "total_s": total_s, "verdict": overall_verdict(results), "checks": [asdict(r) for r in results]})
    return 0 if overall_verdict(results) == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
