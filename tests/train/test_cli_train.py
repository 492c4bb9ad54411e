"""`fastload train`: the subcommand a user runs on the demo corpus, its resume and its sweep."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import subprocess
import sys
import typing

import pytest

from fastload.cli import main
from fastload.train import MODEL_CONFIGS, TrainConfig
from fastload.train.config import PRECISIONS
from fastload.train.flags import add_config_flags, config_fields, config_from_flags

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


# The flags come from TrainConfig's source (the NOTE in fastload/train/flags.py); these hold them to the real dataclass.


def _train_parser() -> argparse.ArgumentParser:
    """The settings' flags, on a parser with a dataset argument as `fastload train` has."""
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    add_config_flags(parser)
    return parser


def _train_flags() -> dict[str, argparse.Action]:
    """`fastload train`'s arguments by destination."""
    return {action.dest: action for action in _train_parser()._actions}


def _comments_beside_the_fields() -> dict[str, str]:
    """Read with a plain regex, not with flags.py's reader, so the two check each other."""
    return dict(re.findall(r"^    (\w+): [^=]+= .*?  # (.*)$", inspect.getsource(TrainConfig), re.M))


def _kind(field: dataclasses.Field) -> type:
    hint = typing.get_type_hints(TrainConfig)[field.name]
    return next(t for t in (bool, int, float, str) if t in (typing.get_args(hint) or (hint,)))


def test_every_train_config_field_is_a_flag_whose_help_is_the_comment_beside_the_field():
    flags, comments = _train_flags(), _comments_beside_the_fields()
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert list(comments) == names, "every TrainConfig field needs a one-line comment: it is the flag's --help"
    for field in dataclasses.fields(TrainConfig):
        action = flags[field.name]
        assert action.help.startswith(comments[field.name]) and action.default is None, field.name
        if field.default is not None and field.default is not False:
            shown = action.help.rsplit("(default: ", 1)[1].removesuffix(")")
            assert shown == field.default if isinstance(field.default, str) else ast.literal_eval(shown) == field.default, field.name
    assert set(flags) - set(names) == {"help", "dataset", "position"}  # the flags that are not settings
    assert [(f.name, f.default) for f in config_fields()] == [(f.name, f.default) for f in dataclasses.fields(TrainConfig)]


def _a_value_other_than_the_default(field: dataclasses.Field, action: argparse.Action):
    if action.choices:
        return next(choice for choice in action.choices if choice != field.default)
    if field.name == "model":
        return "mini"
    kind = _kind(field)
    if kind is bool:
        return not field.default
    if kind is int:
        return (field.default or 0) + 3
    if kind is float:
        return (field.default or 1.0) / 2
    return f"{field.default or 'value'}-given"


def test_every_flag_given_reaches_train_config_as_its_field_with_its_type():
    parser, flags = _train_parser(), _train_flags()
    expected, argv = {}, []
    for field in dataclasses.fields(TrainConfig):
        action, value = flags[field.name], _a_value_other_than_the_default(field, flags[field.name])
        expected[field.name] = value
        if isinstance(value, bool):
            argv.append(action.option_strings[0] if value else next(o for o in action.option_strings if o.startswith("--no-")))
        else:
            argv += [action.option_strings[0], str(value)]
    config = config_from_flags(parser.parse_args(["data", *argv]))
    assert {name: getattr(config, name) for name in expected} == expected
    assert all(type(getattr(config, name)) is type(value) for name, value in expected.items())
    assert all(getattr(config, name) != getattr(TrainConfig(), name) for name in expected)
    assert config_from_flags(parser.parse_args(["data"])) == TrainConfig()  # no flags: every default


def test_grad_clip_0_means_no_clipping_and_flags_given_override_a_sweep_files_train_table():
    args = _train_parser().parse_args(["data", "--grad-clip", "0", "--steps", "7"])
    config = config_from_flags(args, {"steps": 3, "lr": 0.01})
    assert config.grad_clip is None and config.steps == 7 and config.lr == 0.01


def test_precision_is_offered_as_its_fixed_set_and_the_config_help_names_every_model():
    flags = _train_flags()
    assert tuple(flags["precision"].choices) == PRECISIONS
    assert flags["model"].choices is None  # an unknown name gets TrainConfig's error, which lists the valid ones
    assert flags["model"].option_strings == ["--config"] and all(name in flags["model"].help for name in MODEL_CONFIGS)
    assert flags["plot"].option_strings == ["--plot", "--no-plot"]


def test_a_setting_the_cli_cannot_read_as_a_flag_is_named_with_what_it_needs(tmp_path):
    source = tmp_path / "config.py"
    source.write_text("class TrainConfig:\n    steps: int = 1  # steps\n    tags: list = field(default_factory=list)  # tags\n")
    with pytest.raises(TypeError, match=r"TrainConfig.tags .* needs a bool/int/float/str annotation and a literal default"):
        config_fields(source)


def test_fastload_train_offers_exactly_the_config_flags_and_sweep(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    usage = capsys.readouterr().out.split("\n\n", 1)[0]  # the usage lines name every option, and nothing from the help texts
    config_flags = {option for action in _train_parser()._actions for option in action.option_strings}
    assert set(re.findall(r"(?<![\w-])(--?[a-z][-\w]*)", usage)) == (config_flags | {"--sweep", "--mix"}) - {"--help"}  # usage shows -h alone


def test_building_the_train_parser_imports_no_torch():
    code = (
        "import sys\nfrom fastload.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'building the parser imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_importing_the_flags_module_imports_no_torch():
    code = "import sys\nimport fastload.train.flags\nassert 'torch' not in sys.modules, 'importing fastload.train.flags imported torch'\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
