"""`Mixture`: a weighted mixture of datasets, as the user writes it.

    mix = fastload.Mixture({
        "web":   ("data/web", 0.6),
        "code":  ("data/code", 0.3),
        "books": ("data/books", 0.1),
    }, on_exhausted={"books": "repeat"})
    packed = fastload.PackedDataset(mix, seq_len=1024)

A description only — names, datasets (paths or opened `fastload.Dataset`s),
exact weights and what to do when a source has been read whole — accepted
where a dataset is (`PackedDataset`; see the README). The order itself is
`mixture_plan.py`'s. The CLI's `--mix web=data/web:0.6 code=data/code:0.3`
and a TOML file (`[sources.web] path = "data/web", weight = 0.6`) read
into the same object.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from fastload.errors import ConfigError
from fastload.store import is_remote, local_path
from fastload.toml_files import read_toml
from fastload.sampler.mixing import exact_weights
from fastload.sampler.mixture_plan import EXHAUSTION_POLICIES

__all__ = ["Mixture"]


class Mixture:
    """Datasets read together in fixed proportions.

    sources: {name: (dataset, weight)}: a dataset is a path or a
        `fastload.Dataset`; weights are proportions (normalised; ints,
        Fractions and floats, 0.1 read as exactly 1/10).
    on_exhausted: {name: policy} for a source read whole: "repeat" (the
        default: read it again in a fresh order — upsampling), "stop" (end
        the run before any of its rows is read twice) or "drop" (leave it
        out from then on; the others keep their proportions).
    max_repetitions: {name: n}: refuse, when a run's length is known
        (`fastload train`, or `PackedMixture.check_run`), weights that would
        read any row of that source more than n times.
    schedule: {first global batch: {name: weight}}: other weights from that
        batch on (e.g. an annealing stage at the end of the run); every stage
        weights every source (0 pauses one). Across a change no row of a
        source's current pass is lost or read twice.
    """

    def __init__(self, sources: dict, *, on_exhausted: dict[str, str] | None = None, schedule: dict | None = None, max_repetitions: dict[str, int] | None = None):
        if not isinstance(sources, dict) or not sources:
            raise ConfigError('a Mixture takes a non-empty dict {name: (dataset, weight)}, e.g. {"web": ("data/web", 0.7), "code": ("data/code", 0.3)}')
        datasets, raw = {}, {}
        for name, entry in sources.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"mixture source names must be non-empty strings, found {name!r}")
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise ConfigError(f"mixture source {name!r} must be a (dataset, weight) pair, found {entry!r}")
            datasets[name], raw[name] = entry
            if not isinstance(datasets[name], (str, os.PathLike)) and not hasattr(datasets[name], "block_rows"):
                raise ConfigError(f"mixture source {name!r}: the dataset must be a path or a fastload.Dataset, found {type(datasets[name]).__name__}")
        self.datasets = datasets
        self.weights: dict[str, Fraction] = exact_weights(raw)
        policies = {name: "repeat" for name in datasets}
        for name, policy in (on_exhausted or {}).items():
            if name not in datasets:
                raise ConfigError(f"on_exhausted names {name!r}, which is not a source of the mixture ({', '.join(datasets)})")
            if policy not in EXHAUSTION_POLICIES:
                raise ConfigError(f"source {name!r}: on_exhausted must be one of {', '.join(EXHAUSTION_POLICIES)}, found {policy!r}")
            policies[name] = policy
        self.on_exhausted = policies
        self.max_repetitions: dict[str, int] = {}
        for name, limit in (max_repetitions or {}).items():
            if name not in datasets:
                raise ConfigError(f"max_repetitions names {name!r}, which is not a source of the mixture ({', '.join(datasets)})")
            if type(limit) is not int or limit < 1:
                raise ConfigError(f"max_repetitions of source {name!r} must be a positive integer (times a row may be read), found {limit!r}")
            self.max_repetitions[name] = limit
        self.schedule: list[tuple[int, dict[str, Fraction]]] = []
        for start, stage in sorted((schedule or {}).items()):
            if type(start) is not int or start < 1:
                raise ConfigError(f"schedule stages start at a global batch >= 1 (batch 0 has the sources' own weights), found {start!r}")
            if not isinstance(stage, dict) or set(stage) != set(datasets):
                named = ", ".join(stage) if isinstance(stage, dict) else repr(stage)
                raise ConfigError(f"the schedule's stage from batch {start} must weight every source ({', '.join(datasets)}), found {named}")
            weights = exact_weights({name: stage[name] for name in datasets})
            self.schedule.append((start, weights))

    @property
    def names(self) -> list[str]:
        return list(self.datasets)

    @classmethod
    def parse(cls, specs: list[str]) -> "Mixture":
        """From command-line words NAME=PATH:WEIGHT[:stop] (the path may itself hold ':', as in s3://)."""
        sources, policies = {}, {}
        for spec in specs:
            name, sep, rest = spec.partition("=")
            parts = rest.rsplit(":", 2) if sep else []
            policy = None
            if len(parts) == 3 and parts[2] in EXHAUSTION_POLICIES:
                path, weight, policy = parts
            else:
                path, _, weight = rest.rpartition(":") if sep else ("", "", "")
            try:
                value = Fraction(weight)
            except (ValueError, ZeroDivisionError):
                value = None
            if not name or not path or value is None:
                raise ConfigError(f"cannot read mixture source {spec!r}: write NAME=PATH:WEIGHT, e.g. web=data/web:0.6 (add :stop to end the run when it is read whole)")
            if name in sources:
                raise ConfigError(f"mixture source {name!r} is given twice")
            sources[name] = (path, value)
            if policy:
                policies[name] = policy
        return cls(sources, on_exhausted=policies)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "Mixture":
        """From a TOML file: one table per source under [sources], with path, weight and optionally
        on_exhausted; and optionally the stages of a schedule.

            [sources.web]
            path = "data/web"
            weight = 0.6
            [sources.books]
            path = "data/books"
            weight = 0.4
            on_exhausted = "stop"
            [[schedule]]
            from_batch = 9000
            weights = { web = 0.3, books = 0.7 }
        """
        file = Path(path)
        config = read_toml(file, "mixture file", instead="give the sources as --mix NAME=PATH:WEIGHT or fastload.Mixture({...}) instead")
        tables = config.get("sources")
        if not isinstance(tables, dict) or not tables:
            raise ConfigError(f"the mixture file {str(file)!r} needs a [sources.NAME] table per source, with path and weight")
        sources, policies, limits = {}, {}, {}
        unknown = set(config) - {"sources", "schedule"}
        if unknown:
            raise ConfigError(f"the mixture file {str(file)!r} has unknown tables {', '.join(sorted(unknown))}; it takes [sources.NAME] and [[schedule]]")
        for name, table in tables.items():
            if not isinstance(table, dict) or "path" not in table or "weight" not in table:
                raise ConfigError(f"{str(file)!r}: [sources.{name}] needs path and weight")
            unknown = set(table) - {"path", "weight", "on_exhausted", "max_repetitions"}
            if unknown:
                raise ConfigError(f"{str(file)!r}: [sources.{name}] has unknown keys {', '.join(sorted(unknown))}; it takes path, weight, on_exhausted, max_repetitions")
            dataset = table["path"]
            if not is_remote(dataset) and not local_path(dataset).is_absolute():  # a URL stays text: Path folds "s3://" into "s3:/"
                dataset = str(file.parent / local_path(dataset))  # relative to the file, as a reader of the file expects
            sources[name] = (str(dataset), table["weight"])
            if "on_exhausted" in table:
                policies[name] = table["on_exhausted"]
            if "max_repetitions" in table:
                limits[name] = table["max_repetitions"]
        schedule = {}
        for stage in config.get("schedule", []):
            if not isinstance(stage, dict) or set(stage) != {"from_batch", "weights"} or not isinstance(stage["weights"], dict):
                raise ConfigError(f"{str(file)!r}: each [[schedule]] stage takes from_batch = N and weights = {{name = weight, ...}}")
            schedule[stage["from_batch"]] = stage["weights"]
        return cls(sources, on_exhausted=policies, schedule=schedule, max_repetitions=limits)

    def fingerprint(self) -> dict:
        """What fixes the mixture's order, as plain data (saved in state dicts and compared on resume)."""
        return {
            "sources": self.names,
            "weights": {name: str(w) for name, w in self.weights.items()},
            "on_exhausted": dict(self.on_exhausted),
            "schedule": [[start, {name: str(w) for name, w in stage.items()}] for start, stage in self.schedule],
        }

    def __repr__(self) -> str:
        parts = ", ".join(f"{name!r}: ({str(getattr(d, 'path', d))!r}, {self.weights[name]})" for name, d in self.datasets.items())
        return f"Mixture({{{parts}}})"
