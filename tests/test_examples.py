"""The README's complete training loop runs, stops, and resumes."""

from __future__ import annotations

import subprocess
import sys
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
