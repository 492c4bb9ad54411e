"""`fastload.train.train()` in Python shows the progress `fastload train` prints, unless told to be quiet."""

from __future__ import annotations

from fastload import cli
from fastload.train import sweep, train
from fastload.train.progress import format_record


def test_train_in_python_logs_progress_on_stderr_by_default(corpus, tiny_config, capsys):
    train(corpus, tiny_config(steps=4, log_every=2, eval_every=4))
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith("training GPT 1 layers x 32") and "on cpu in fp32" in lines[0]
    assert [line.split("  loss")[0] for line in lines if line.startswith("step ")] == ["step      2", "step      4"]
    assert any(line.startswith("eval      4  val_loss") for line in lines)
    assert lines[-1].startswith("done at step 4: best val_loss")
    assert captured.out == ""  # stdout is the caller's


def test_quiet_train_writes_nothing(corpus, tiny_config, capsys):
    result = train(corpus, tiny_config(steps=2), quiet=True)
    assert result.steps == 2 and capsys.readouterr() == ("", "")


def test_on_record_receives_the_records_instead_of_the_lines(corpus, tiny_config, capsys):
    records = []
    train(corpus, tiny_config(steps=2), on_record=records.append)
    assert [r["kind"] for r in records][0] == "start" and records[-1]["kind"] == "end"
    assert capsys.readouterr() == ("", "")


def test_a_sweep_logs_each_run_unless_quiet(corpus, tiny_config, capsys):
    sweep(corpus, tiny_config(steps=2, eval_every=2), {"lr": [1e-3, 3e-3]})
    assert capsys.readouterr().err.count("done at step 2") == 2
    sweep(corpus, tiny_config(steps=2, eval_every=2), {"lr": [1e-3]}, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_the_python_lines_are_the_lines_the_cli_prints(corpus, tiny_config, capsys):
    records = []
    train(corpus, tiny_config(steps=4, log_every=2, eval_every=2, resume=False), on_record=records.append)
    assert {r["kind"] for r in records} == {"start", "train", "eval", "end"}
    for record in records:
        cli._print_record(record)
        assert capsys.readouterr().out == format_record(record) + "\n"


def test_the_cli_prints_each_line_once_on_stdout(corpus, tmp_path, capsys):
    assert cli.main(["train", str(corpus), "--config", "tiny", "--seq-len", "32", "--batch-size", "2", "--workers", "0",
                     "--steps", "2", "--log-every", "1", "--eval-every", "2", "--eval-batches", "1", "--no-plot",
                     "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\nstep ") == 2 and captured.out.count("done at step 2") == 1
    assert "step " not in captured.err
