"""The hyper-parameter grid: parsing names and values, and every combination once."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fastload.errors import ConfigError
from fastload.train import TrainConfig, parse_sweep, sweep
from fastload.train.sweep import combinations


def test_sweep_items_parse_to_typed_values_under_the_config_field_names():
    grid, fixed = parse_sweep(["lr=3e-4,1e-3", "batch-size=8,16", "compile=false", "patience=none,3", "precision=bf16"])
    assert grid == {"lr": [3e-4, 1e-3], "batch_size": [8, 16], "compile": [False], "patience": [None, 3], "precision": ["bf16"]}
    assert fixed == {}
    assert isinstance(grid["batch_size"][0], int) and isinstance(grid["lr"][0], float)


def test_combinations_cover_the_grid_once_each_with_the_last_name_varying_fastest():
    runs = combinations({"lr": [1, 2], "batch_size": [8, 16]})
    assert runs == [{"lr": 1, "batch_size": 8}, {"lr": 1, "batch_size": 16}, {"lr": 2, "batch_size": 8}, {"lr": 2, "batch_size": 16}]


def test_a_toml_sweep_must_hold_a_sweep_table_of_lists(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[sweep]\nlr = 0.001\n")
    with pytest.raises(ConfigError, match="must be a non-empty list"):
        parse_sweep([str(path)])
    path.write_text("[train]\nsteps = 3\n")
    with pytest.raises(ConfigError, match=r"has no \[sweep\] table"):
        parse_sweep([str(path)])


def test_out_and_resume_cannot_be_swept_and_a_sweep_needs_a_validation_split(corpus):
    with pytest.raises(ConfigError, match="cannot sweep 'out'"):
        parse_sweep(["out=a,b"])
    with pytest.raises(ConfigError, match="validation > 0"):
        sweep(corpus, TrainConfig(validation=0.0), {"lr": [1e-3]})


def test_every_setting_but_out_and_resume_can_be_swept_under_its_field_name_or_its_flags_kebab_case():
    for field in fields(TrainConfig):
        if field.name in ("out", "resume"):
            continue
        for key in (field.name, field.name.replace("_", "-")):
            grid, _ = parse_sweep([f"{key}=1,2"])
            assert list(grid) == [field.name]
