"""bench/gpu_check.py without a GPU: the skip, the verdicts on made-up figures, and checks 4 and 5 run on the CPU.

The CUDA measurements themselves (checks 1-3, and 4 and 5 on a device) need
a GPU: run `python bench/gpu_check.py` there. What runs here is everything
around them: the arithmetic and PASS/WARN/FAIL decisions, and check 4's
bookkeeping with `cpu_ops()` standing in for the device — a real
`fastload.DataLoader` with two workers and its pool, compared batch by
batch with a single-process read.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"


def _load_gpu_check():
    """bench/gpu_check.py as a module; it imports its helpers (_check_results, _slot_reuse) and then
    takes bench/ off sys.path, so they are found in sys.modules."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, sys.modules["_check_results"], sys.modules["_slot_reuse"]


gpu_check, results, reuse = _load_gpu_check()


# ---------------------------------------------------------------- the skip


def test_without_cuda_the_script_prints_one_line_saying_why_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a machine that has one
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["gpu_check: skipped — no CUDA device (torch.cuda.is_available() is False)"]


# ---------------------------------------------------------------- arithmetic


def test_bandwidth_is_decimal_gigabytes_per_second():
    assert results.gb_per_s(64 * 2**20, 1.0) == pytest.approx(67.108864)
    with pytest.raises(ValueError, match="positive"):
        results.gb_per_s(1, 0.0)


def test_overlap_is_the_time_saved_as_a_share_of_the_shorter_phase_clamped_to_0_1():
    assert results.overlap_fraction(10.0, 4.0, 10.0) == 1.0  # the copies hid entirely behind compute
    assert results.overlap_fraction(10.0, 4.0, 14.0) == 0.0  # one after the other
    assert results.overlap_fraction(10.0, 4.0, 12.0) == pytest.approx(0.5)
    assert results.overlap_fraction(10.0, 4.0, 9.5) == 1.0  # noise: faster than compute alone
    assert results.overlap_fraction(10.0, 4.0, 15.0) == 0.0  # noise: slower than both added up


def test_enough_matmuls_to_last_as_long_as_the_copies():
    assert results.iterations_to_cover(10.0, 0.3) == 34
    assert results.iterations_to_cover(0.1, 5.0) == 1


def test_trainer_throughput_weights_each_interval_by_its_steps_and_leaves_out_the_warm_up():
    records = [
        {"kind": "train", "step": 20, "loss": 9.0, "step_time_ms": 100.0, "data_wait_ms": 50.0},  # warm-up interval
        {"kind": "eval", "step": 20, "val_loss": 8.0},
        {"kind": "train", "step": 40, "loss": 7.0, "step_time_ms": 10.0, "data_wait_ms": 1.0},
        {"kind": "train", "step": 50, "loss": 6.5, "step_time_ms": 20.0, "data_wait_ms": 0.0},
    ]
    timed = results.train_throughput(records)
    assert timed["steps"] == 30
    assert timed["steps_per_s"] == pytest.approx(1000 * 30 / (20 * 10.0 + 10 * 20.0))
    assert timed["data_wait_fraction"] == pytest.approx(20 * 1.0 / 400.0)
    assert timed["final_loss"] == 6.5
    whole = results.train_throughput(records, skip_first=False)
    assert whole["steps"] == 50 and whole["data_wait_fraction"] == pytest.approx((20 * 50 + 20 * 1.0) / (2000 + 400))
    with pytest.raises(ValueError, match="no training records"):
        results.train_throughput([{"kind": "end", "step": 0}])


def test_mismatched_batches_names_differing_batches_and_counts_missing_ones():
    assert results.mismatched_batches([[1, 2], [3, 4]], [[1, 2], [3, 4]]) == []
    assert results.mismatched_batches([[1, 2], [3, 5]], [[1, 2], [3, 4]]) == [1]
    assert results.mismatched_batches([[1, 2]], [[1, 2], [3, 4], [5, 6]]) == [1, 2]


# ---------------------------------------------------------------- verdicts


def test_a_slot_slower_than_torch_pinned_memory_fails_and_points_at_registration():
    verdict, note = results.bandwidth_verdict(slot=12.0, torch_pinned=50.0, pageable=11.0)
    assert verdict == "FAIL" and "not registered" in note


def test_a_slot_as_fast_as_torch_pinned_memory_passes():
    assert results.bandwidth_verdict(slot=49.0, torch_pinned=50.0, pageable=20.0)[0] == "PASS"


def test_pinned_memory_no_faster_than_pageable_is_a_warning_not_a_failure():
    verdict, note = results.bandwidth_verdict(slot=50.0, torch_pinned=50.0, pageable=48.0)
    assert verdict == "WARN" and "pinning buys little" in note


def test_overlap_below_half_fails():
    assert results.overlap_verdict(0.49)[0] == "FAIL"
    assert results.overlap_verdict(0.9)[0] == "PASS"


def test_trainer_verdict_fails_on_a_short_run_or_a_diverged_loss_and_warns_on_a_long_data_wait():
    good = {"final_loss": 5.0, "data_wait_fraction": 0.01}
    assert results.trainer_verdict(good, steps_wanted=200, steps_done=200)[0] == "PASS"
    assert results.trainer_verdict(good, steps_wanted=200, steps_done=120)[0] == "FAIL"
    assert results.trainer_verdict({**good, "final_loss": math.nan}, steps_wanted=200, steps_done=200)[0] == "FAIL"
    assert results.trainer_verdict({**good, "final_loss": None}, steps_wanted=200, steps_done=200)[0] == "FAIL"
    assert results.trainer_verdict({**good, "data_wait_fraction": 0.3}, steps_wanted=200, steps_done=200)[0] == "WARN"


def _result(verdict: str) -> object:
    return results.CheckResult(f"a check that ends {verdict}", verdict, ["what", "found"], [["x", "1"]])


def test_the_summary_fails_if_any_check_fails_and_warnings_alone_do_not():
    assert results.overall_verdict([_result("PASS"), _result("WARN")]) == "PASS"
    assert results.overall_verdict([_result("PASS"), _result("FAIL"), _result("WARN")]) == "FAIL"
    assert results.overall_verdict([]) == "FAIL"  # nothing ran: nothing was shown to work


def test_the_printout_has_a_table_per_check_and_ends_with_the_overall_verdict():
    text = results.format_results([_result("PASS"), _result("FAIL")])
    assert "== 1. a check that ends PASS: PASS" in text and "== 2. a check that ends FAIL: FAIL" in text
    assert text.count("what  found") == 2
    assert text.splitlines()[-1] == "gpu_check: FAIL"


def test_a_check_that_raises_becomes_a_failure_naming_the_error_and_the_others_still_run():
    def broken():
        raise RuntimeError("cudaHostRegister said no")

    row = gpu_check._run_one("broken", broken)
    assert row.verdict == "FAIL" and "RuntimeError: cudaHostRegister said no" in row.note
    assert gpu_check._run_one("broken control", broken, fail_as="WARN").verdict == "WARN"


# ---------------------------------------------------------------- check 4 on the CPU


def test_checksums_see_changed_values_and_swapped_rows_and_agree_across_dtypes():
    batch = {"b": torch.arange(12).view(3, 4), "a": torch.arange(6, dtype=torch.int32).view(2, 3)}
    base = reuse.batch_checksum(batch).tolist()
    assert base == reuse.batch_checksum({"a": batch["a"].to(torch.int64), "b": batch["b"]}).tolist()
    assert reuse.batch_checksum({**batch, "b": batch["b"][[1, 0, 2]]}).tolist() != base
    changed = batch["b"].clone()
    changed[2, 3] += 1
    assert reuse.batch_checksum({**batch, "b": changed}).tolist() != base


def test_index_rows_says_which_row_it_is():
    rows = gpu_check.IndexRows(10, 4)
    assert rows[3].tolist() == [12, 13, 14, 15] and len(rows) == 10


def _index_rows_case(num_rows=96, row_len=512, batch_rows=8):
    import fastload

    rows = gpu_check.IndexRows(num_rows, row_len)
    return lambda **kw: fastload.DataLoader(rows, batch_size=batch_rows, shuffle=False, **kw)


def test_slot_reuse_passes_when_workers_and_a_single_process_read_the_same_batches():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory=True without CUDA: torch's warning
        result = reuse.check_slot_reuse({"index rows": _index_rows_case()}, reuse.cpu_ops(), max_in_flight=6)
    assert result.verdict == "PASS", result.note
    assert result.figures["index rows"]["batches"] == 12 and result.figures["index rows"]["mismatched"] == []


class _DiffersInWorkers(gpu_check.IndexRows):
    """Rows from worker processes are off by one in one place: what an overwritten slot would look like."""

    def __getitem__(self, i):
        row = super().__getitem__(i)
        if torch.utils.data.get_worker_info() is not None and i == 37:
            row[5] += 1
        return row


def test_slot_reuse_fails_naming_the_batch_when_the_workers_batches_differ():
    import fastload

    rows = _DiffersInWorkers(96, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reuse.check_slot_reuse({"differs": lambda **kw: fastload.DataLoader(rows, batch_size=8, shuffle=False, **kw)},
                                        reuse.cpu_ops(), max_in_flight=6)
    assert result.verdict == "FAIL"
    assert result.figures["differs"]["mismatched"] == [37 // 8]


def test_device_checksums_wait_for_old_work_beyond_max_in_flight():
    marks, waited = iter(range(100)), []
    ops = reuse.DeviceOps("cpu", to_device=lambda t: t.clone(), delay=lambda: None, mark=lambda: next(marks), wait=waited.append)
    sums = reuse.device_checksums([torch.arange(4) + k for k in range(5)], ops, max_in_flight=2)
    assert waited == [0, 1, 2]  # from the third batch on, each waits for the one queued two before it
    assert sums == [reuse.batch_checksum(torch.arange(4) + k).tolist() for k in range(5)]


def test_the_control_runs_the_loader_with_a_pool_that_puts_slots_back_without_waiting():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reuse.check_slot_reuse_control(_index_rows_case(), reuse.cpu_ops(), max_in_flight=6)
    # On the CPU copies are synchronous: nothing can be overwritten, and the control says it proved nothing.
    assert result.verdict == "WARN" and "did not occur" in result.note
    assert result.figures["batches"] == 12


def test_the_control_pool_reuses_a_slot_whose_event_is_pending_but_keeps_one_off_segments_waiting():
    class Pending:
        def query(self):
            return False

    loader = reuse.eager_reuse_loader(_index_rows_case())(num_workers=2, pin_memory=False)
    pool = loader._pool
    slot_arena = pool.add_arena(num_slots=1, slot_bytes=4096)
    slot = pool.acquire()
    pool._returned.append((slot, Pending()))  # what release() appends for a pinned pool
    assert pool.acquire() == slot  # back at once: the planted bug
    other = pool.add_arena(num_slots=1, slot_bytes=4096)  # retires the first arena, whose slot is still leased
    pool._returned.append(((slot_arena, slot[1]), Pending()))
    assert pool.num_free == 1 and slot_arena in pool.arenas  # the retired arena stays mapped until its copy is done
    assert pool.acquire() == (other, 0)
    pool.close()


# ---------------------------------------------------------------- check 5 on the CPU


def test_the_trainer_check_reports_steps_per_second_and_data_wait(tmp_path):
    demo = gpu_check.tokenized_demo(tmp_path)
    result = gpu_check.check_trainer(demo, device="cpu", steps=4, batch_size=2, log_every=2)
    assert result.verdict in ("PASS", "WARN"), result.note  # WARN: a loaded 2-core machine may wait for data
    assert result.figures["timed"]["steps"] == 2 and result.figures["all"]["steps"] == 4
    assert result.figures["timed"]["steps_per_s"] > 0 and 0 <= result.figures["all"]["data_wait_fraction"] < 1
