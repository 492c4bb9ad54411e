"""The README's complete training loop runs, stops, resumes, says where its checkpoint goes, and shows progress when piped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import fastload
from fastload.demo import demo_corpus_path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "train_packed.py"


def test_the_training_example_trains_and_resumes(tmp_path):
    fastload.convert(demo_corpus_path(), tmp_path / "corpus", tokenizer="default", quiet=True)
    command = [sys.executable, str(EXAMPLE), str(tmp_path / "corpus"), "--seq-len", "32", "--batch-size", "4", "--workers", "0", "--checkpoint", str(tmp_path / "ck.pt")]
    first = subprocess.run([*command, "--steps", "50"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "step    50" in first.stdout
    second = subprocess.run([*command, "--steps", "60"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resumed at step 50" in second.stdout and "step    60" in second.stdout


def test_the_training_example_checkpoints_into_a_run_folder_it_names_and_prints_progress_as_it_goes(tmp_path):
    """Piped, as under `| tee`: each line arrives while the run goes on (not at exit, as a block-buffered stdout
    would have it), and the checkpoint lands in runs/train_packed/, named at the start, not in the current folder."""
    fastload.convert(demo_corpus_path(), tmp_path / "corpus", tokenizer="default", quiet=True)
    work = tmp_path / "work"
    work.mkdir()
    command = [sys.executable, str(EXAMPLE), str(tmp_path / "corpus"), "--seq-len", "32", "--batch-size", "4", "--workers", "0",
               "--steps", "1000000"]  # far more than it will run: the test stops it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered, as a pipe makes it
    run = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, run.kill)  # a line that never comes fails the test instead of hanging it
    watchdog.start()
    saved = work / "runs" / "train_packed" / "checkpoint.pt"
    try:
        first, second = run.stdout.readline(), run.stdout.readline()
        still_running = run.poll() is None
        while run.poll() is None and not saved.exists():  # written just after the step-50 line
            time.sleep(0.05)
    finally:
        watchdog.cancel()
        run.kill()
        run.communicate()
    assert "checkpoint: runs/train_packed/checkpoint.pt" in first, first
    assert second.startswith("step    50  loss"), second
    assert still_running
    assert saved.exists() and not (work / "checkpoint.pt").exists()
