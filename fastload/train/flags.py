"""`fastload train`'s flags: TrainConfig's fields as argparse arguments, and the TrainConfig they make.

    parser = argparse.ArgumentParser()
    add_config_flags(parser)                                  # --config, --steps, ..., --position
    config = config_from_flags(parser.parse_args(argv))       # TrainConfig, checked by its __post_init__

What lives here: reading TrainConfig's fields from config.py's source
(`config_fields`), one flag per field (`add_config_flags`), and turning the
flags given back into a `TrainConfig` (`config_from_flags`). What does not:
the subcommand itself (its `dataset` argument, `--sweep`, running and
printing are fastload/cli.py's), and any checking of values, which is
TrainConfig's. The trade-off taken, reading source instead of importing the
class, is the NOTE below. This module never imports torch; only
`config_from_flags` does, when it builds the TrainConfig.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastload.train.config import TrainConfig

__all__ = ["ConfigField", "add_config_flags", "config_fields", "config_from_flags"]

# NOTE [train flags from TrainConfig's source]
# `fastload train`'s flags are TrainConfig's fields, each flag's help the comment beside its field,
# so a setting is written once. They are read from fastload/train/config.py's source, not imported:
# config.py imports model.py and so torch, and building the parser must not (the other subcommands
# run without it); and only the source holds the comments. Every flag defaults to None, so what is
# not given comes from a sweep file's [train] table or from TrainConfig, which checks every value
# (config_from_flags). tests/train/test_cli_train.py holds this reading to the real dataclass.

_CONFIG_SOURCE = Path(__file__).with_name("config.py")
_FLAG_NAMES = {"model": "--config"}  # the name users know: `--config tiny` is in the README and every example


@dataclass(frozen=True)
class ConfigField:
    """One TrainConfig field as written in config.py (see the NOTE above)."""

    name: str
    kind: type  # bool, int, float or str: the first of these in the annotation (`int | None` -> int)
    default: object  # the literal default
    default_text: str  # as written in config.py (`1e-3`, not 0.001)
    comment: str
    choices: tuple | None  # the fixed set __post_init__ checks it against (`not in PRECISIONS`)


def config_fields(source_path: Path = _CONFIG_SOURCE) -> list[ConfigField]:
    """TrainConfig's fields as written in its source (see the NOTE above)."""
    source = source_path.read_text(encoding="utf-8")
    module = ast.parse(source)
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT}
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in module.body  # such as PRECISIONS
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Tuple)}
    cls = next(node for node in module.body if isinstance(node, ast.ClassDef) and node.name == "TrainConfig")
    # `self.<field> not in <CONSTANT>`. MODEL_CONFIGS is imported (with torch), so --config keeps TrainConfig's error listing the names.
    choices = {c.left.attr: constants[c.comparators[0].id] for c in ast.walk(cls)
               if isinstance(c, ast.Compare) and isinstance(c.ops[0], ast.NotIn) and isinstance(c.left, ast.Attribute)
               and ast.unparse(c.left.value) == "self" and ast.unparse(c.comparators[0]) in constants}
    found = []
    for node in (n for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)):
        name, types = node.target.id, {n.id for n in ast.walk(node.annotation) if isinstance(n, ast.Name)}
        kind = next((t for t in (bool, int, float, str) if t.__name__ in types), None)
        problem = f"TrainConfig.{name} in {source_path} needs a bool/int/float/str annotation and a literal default to become a `fastload train` flag"
        if kind is None:
            raise TypeError(problem)
        try:
            default = ast.literal_eval(node.value)  # ValueError for field(...), a name, or no default at all
        except ValueError:
            raise TypeError(problem) from None
        default_text = default if isinstance(default, str) else ast.get_source_segment(source, node.value)
        comment = next((comments[row] for row in range(node.lineno, node.end_lineno + 1) if row in comments), "")
        found.append(ConfigField(name, kind, default, default_text, comment, choices.get(name)))
    return found


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--batch-size` ↔ `batch_size`, `--config` ↔ `model`), then `--position`."""
    for field in config_fields():
        _add_config_flag(parser, field)
    parser.add_argument("--position", help="position encoding: learned (default) or rotary")


def _add_config_flag(parser: argparse.ArgumentParser, field: ConfigField) -> None:
    # default=None: a flag left out must not hide the sweep file's [train] value or TrainConfig's default.
    flag = _FLAG_NAMES.get(field.name, "--" + field.name.replace("_", "-"))
    shown_default = "" if field.default is None or field.default is False else f" (default: {field.default_text})"
    help_text = (field.comment + shown_default).replace("%", "%%")
    if field.kind is bool:  # --compile; a field that defaults to True gets --plot / --no-plot
        action = argparse.BooleanOptionalAction if field.default else "store_true"
        parser.add_argument(flag, dest=field.name, action=action, default=None, help=help_text)
    else:
        parser.add_argument(flag, dest=field.name, type=field.kind, choices=field.choices, default=None, help=help_text)


def config_from_flags(args: argparse.Namespace, base: dict | None = None) -> TrainConfig:
    """TrainConfig from `base` (a sweep file's [train] table), overridden by the flags given (imports torch)."""
    from fastload.train.config import TrainConfig
    from fastload.train.model import GPTConfig

    given = {**(base or {}), **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}}
    if given.get("grad_clip") == 0:
        given["grad_clip"] = None
    if args.position is not None:
        given["model"] = GPTConfig.named(given.get("model", TrainConfig.model), position=args.position)
    return TrainConfig(**given)
