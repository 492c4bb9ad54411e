"""`fastload train`: the subcommand a user runs on the demo corpus, its resume and its sweep."""

from __future__ import annotations

import json

import pytest

from fastload.cli import main

SMALL_RUN = ["--config", "tiny", "--seq-len", "32", "--batch-size", "2", "--workers", "0", "--eval-every", "2", "--eval-batches", "1", "--log-every", "2", "--no-plot"]


def test_train_prints_loss_throughput_and_data_wait_and_writes_the_run_folder(corpus, tmp_path, capsys):
    assert main(["train", str(corpus), *SMALL_RUN, "--steps", "4", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "training GPT 2 layers x 128" in out and "on cpu in fp32" in out
    assert out.count("\nstep ") == 2 and "tok/s" in out and "data wait" in out
    assert "eval      4  val_loss" in out and "done at step 4" in out
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "metrics.jsonl").exists()

    assert main(["train", str(corpus), *SMALL_RUN, "--steps", "6", "--out", str(tmp_path / "run"), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resuming at step 4" in out and "step      6" in out and "step      2" not in out


def test_a_sweep_trains_each_combination_and_ranks_them_by_validation_loss(corpus, tmp_path, capsys):
    assert main(["train", str(corpus), *SMALL_RUN, "--steps", "4", "--out", str(tmp_path / "sweep"), "--sweep", "lr=1e-4,3e-3", "batch-size=2"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("sweep results"):].splitlines()
    assert table[1].split()[:3] == ["rank", "lr", "batch_size"]
    rows = [line.split() for line in table[3:]]
    assert [row[0] for row in rows] == ["1", "2"] and {row[1] for row in rows} == {"0.0001", "0.003"}
    assert float(rows[0][3]) <= float(rows[1][3])  # best first
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["run-00-lr=0.0001-batch_size=2", "run-01-lr=0.003-batch_size=2"]


def test_a_sweep_reads_a_toml_file_of_fixed_settings_and_a_grid_and_flags_given_override_the_file(corpus, tmp_path, capsys):
    spec = tmp_path / "sweep.toml"
    spec.write_text("[train]\nsteps = 2\nlog_every = 1\n\n[sweep]\nlr = [1e-3, 2e-3]\n")  # --log-every 2 on the command line wins
    assert main(["train", str(corpus), *SMALL_RUN, "--out", str(tmp_path / "sweep"), "--sweep", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sweep run") == 2 and "done at step 2" in out
    metrics = [json.loads(line) for line in (tmp_path / "sweep" / "run-00-lr=0.001" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["kind"] == "end" and metrics[-1]["step"] == 2
    assert [r["step"] for r in metrics if r["kind"] == "train"] == [2]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config", "huge"], "unknown model config 'huge'; valid names: tiny, mini, gpt2-small, gpt2-medium"),
        (["--sweep", "learning_rate=1,2"], "cannot sweep 'learning_rate'"),
        (["--sweep", "lr"], "is not NAME=V1,V2"),
        (["--resume", "--out", "nowhere"], "no checkpoint at"),
        (["--precision", "fp16", "--device", "cpu"], "needs a CUDA device"),
    ],
)
def test_bad_train_flags_exit_1_with_a_message_saying_what_to_do(corpus, tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(corpus), "--steps", "1", *flags]) == 1
    assert message in capsys.readouterr().err
