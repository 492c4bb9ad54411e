"""The verdicts of `gpu_check.py`: its arithmetic, its thresholds, and the tables it prints. Plain Python, no torch.

Kept apart from the CUDA measurements so that the tests
(`tests/bench/test_gpu_check.py`) can decide PASS, WARN and FAIL from
made-up figures on a machine without a GPU. A verdict is PASS, WARN (it
works, but a figure is off what it should be; the note says why) or FAIL.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from _harness import format_table

SLOT_VS_TORCH_PINNED_MIN = 0.8  # a registered slot should copy as fast as torch's pinned memory; 0.8 leaves room for noise
PINNED_VS_PAGEABLE_EXPECTED = 1.2  # below this, pinning buys nothing here (e.g. a coherent Grace host): a warning
OVERLAP_MIN = 0.5  # copies and compute on separate engines should overlap mostly; under half is a failure
DATA_WAIT_WARN = 0.10  # a loader that keeps the tiny model waiting more than this share of a step is worth a look


@dataclass
class CheckResult:
    """One check: its verdict, a table (header + rows of strings), and a note saying why."""

    name: str
    verdict: str  # PASS, WARN or FAIL
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    figures: dict = field(default_factory=dict)  # the numbers behind the table, for --json


def gb_per_s(num_bytes: int, elapsed_ms: float) -> float:
    """Decimal GB/s (as GPU vendors quote), from bytes moved in `elapsed_ms` milliseconds."""
    if elapsed_ms <= 0:
        raise ValueError(f"elapsed time must be positive, found {elapsed_ms} ms")
    return num_bytes / (elapsed_ms / 1000) / 1e9


def overlap_fraction(compute_ms: float, copy_ms: float, both_ms: float) -> float:
    """Time saved by running both at once, as a share of the shorter one: 1 = fully hidden, 0 = serialised.

    Clamped to [0, 1]: noise can make `both` a little faster than the longer
    one alone, or slower than the two added up.
    """
    shorter = min(compute_ms, copy_ms)
    if shorter <= 0:
        raise ValueError(f"both phases must take time, found compute {compute_ms} ms, copy {copy_ms} ms")
    return min(1.0, max(0.0, (compute_ms + copy_ms - both_ms) / shorter))


def iterations_to_cover(target_ms: float, per_iteration_ms: float) -> int:
    """How many iterations of `per_iteration_ms` last at least `target_ms` (at least one)."""
    return max(1, math.ceil(target_ms / per_iteration_ms))


def bandwidth_verdict(slot: float, torch_pinned: float, pageable: float) -> tuple[str, str]:
    """The slot must copy about as fast as torch's pinned memory; pinned barely beating pageable is a warning."""
    if slot < SLOT_VS_TORCH_PINNED_MIN * torch_pinned:
        return "FAIL", (f"a pool slot copies at {slot / torch_pinned:.2f}x torch's pinned memory (want >= {SLOT_VS_TORCH_PINNED_MIN}x): "
                        "the arena is probably not registered with CUDA (see check 1)")
    if torch_pinned < PINNED_VS_PAGEABLE_EXPECTED * pageable:
        return "WARN", (f"pinned memory is only {torch_pinned / pageable:.2f}x pageable here: pinning buys little on this host "
                        "(a coherent CPU-GPU link such as Grace Hopper does that); the slot matches torch's pinned figure")
    return "PASS", f"slot {slot / torch_pinned:.2f}x torch pinned, {slot / pageable:.1f}x pageable"


def overlap_verdict(fraction: float) -> tuple[str, str]:
    if fraction < OVERLAP_MIN:
        return "FAIL", f"only {fraction:.0%} of the shorter phase was hidden (want >= {OVERLAP_MIN:.0%}): copies from the slot did not run beside compute"
    return "PASS", f"{fraction:.0%} of the shorter phase hidden"


def mismatched_batches(device_sums: list[list[int]], host_sums: list[list[int]]) -> list[int]:
    """Indices of batches whose checksums differ; a difference in the number of batches counts the extra ones."""
    common = min(len(device_sums), len(host_sums))
    bad = [i for i in range(common) if list(device_sums[i]) != list(host_sums[i])]
    return bad + list(range(common, max(len(device_sums), len(host_sums))))


def train_throughput(records: list[dict], *, skip_first: bool = True) -> dict:
    """steps/s and the data-wait share from `fastload.train`'s "train" records (means over each interval).

    Each record covers the steps since the previous one; with `skip_first`,
    the first interval (worker start, CUDA and Numba warm-up) is left out when
    there is more than one.
    """
    train = [r for r in records if r.get("kind") == "train"]
    if not train:
        raise ValueError("no training records: the run logged no step")
    spans, previous = [], 0
    for record in train:
        spans.append((record["step"] - previous, record))
        previous = record["step"]
    if skip_first and len(spans) > 1:
        spans = spans[1:]
    steps = sum(n for n, _ in spans)
    step_ms = sum(n * r["step_time_ms"] for n, r in spans)
    wait_ms = sum(n * r["data_wait_ms"] for n, r in spans)
    return {
        "steps": steps,
        "steps_per_s": 1000 * steps / step_ms if step_ms > 0 else 0.0,
        "data_wait_fraction": wait_ms / step_ms if step_ms > 0 else 0.0,
        "final_loss": train[-1]["loss"],
    }


def trainer_verdict(figures: dict, *, steps_wanted: int, steps_done: int) -> tuple[str, str]:
    loss = figures["final_loss"]
    if steps_done != steps_wanted:
        return "FAIL", f"the run stopped after {steps_done} of {steps_wanted} steps"
    if loss is None or not math.isfinite(loss):
        return "FAIL", f"the loss is {loss}: training diverged"
    if figures["data_wait_fraction"] > DATA_WAIT_WARN:
        return "WARN", f"{figures['data_wait_fraction']:.1%} of each step waits for data (over {DATA_WAIT_WARN:.0%}): the loader is the bottleneck"
    return "PASS", f"{figures['data_wait_fraction']:.2%} of step time waiting for data"


def overall_verdict(results: list[CheckResult]) -> str:
    """FAIL if any check failed (or nothing ran), else PASS (warnings do not fail the run)."""
    if not results or any(r.verdict == "FAIL" for r in results):
        return "FAIL"
    return "PASS"


def format_results(results: list[CheckResult]) -> str:
    """A table per check, then the summary: one line per check and the overall verdict."""
    parts = []
    for number, r in enumerate(results, 1):
        parts.append(f"== {number}. {r.name}: {r.verdict}" + (f" — {r.note}" if r.note else ""))
        if r.rows:
            parts.append(format_table(r.header, r.rows, align="l" * len(r.header)))
        parts.append("")
    parts.append("summary")
    parts += [f"  {r.verdict:<4}  {r.name}" for r in results]
    parts.append(f"gpu_check: {overall_verdict(results)}")
    return "\n".join(parts)


def failed(name: str, exc: BaseException) -> CheckResult:
    """A check that raised: a FAIL row with the error and where it happened."""
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return CheckResult(name, "FAIL", [], [], note=f"raised {type(exc).__name__}: {exc}{where}")


def warning_note(caught: list) -> str:
    """The distinct warnings a check caught, first clause of each, for its table ('' if none)."""
    return " | ".join(sorted({str(w.message).split(";")[0][:120] for w in caught}))
