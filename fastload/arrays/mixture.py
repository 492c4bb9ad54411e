"""`ArrayDataset(mixture, ...)`: fixed-shape columns from a weighted mixture of datasets.

    mix = fastload.Mixture({"photos": ("data/photos", 0.7), "scans": ("data/scans", 0.3)})
    images = fastload.ArrayDataset(mix, {"image": fastload.NormalizeImage(...), "label": None})
    for batch in fastload.DataLoader(images, batch_size=64, num_workers=2, shuffle=True):
        ...   # image, label, and source: which source each row came from

Every source must hold the chosen columns with the same kind, shape and
dtype. A transform that takes its mean and std from the statistics takes
them from the mixture's: the sources' recorded statistics combined with the
mixture's weights (mean = Σ w·mean_s, variance = Σ w·(std_s² + mean_s²) − mean²),
so every row is normalised alike, as one dataset of that blend would be.
"""

from __future__ import annotations

import math

from fastload.arrays.dataset import FIXED_KINDS, ArrayDataset
from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.sampler import Mixture, SamplerOptions
from fastload.sampler.mixture_dataset import RowMixture, open_sources

__all__ = ["array_mixture", "mixture_statistics"]


def array_mixture(mixture: Mixture, columns=None, *, sampling: SamplerOptions | None = None) -> RowMixture:
    """The `RowMixture` of one `ArrayDataset` per source of `mixture`."""
    opened = {name: d if isinstance(d, Dataset) else Dataset(d) for name, d in mixture.datasets.items()}
    first_name, first = next(iter(opened.items()))
    if columns is None:
        columns = {c.name: None for c in first.schema if c.kind in FIXED_KINDS}
    elif not isinstance(columns, dict):
        columns = {name: None for name in columns}
    for name, dataset in opened.items():
        for column in columns:
            if column not in dataset.schema.names:
                raise ConfigError(f"mixture source {name!r} has no column {column!r}; its columns are {', '.join(dataset.schema.names)}")
            mine, theirs = dataset.schema[column], first.schema[column] if column in first.schema.names else None
            if theirs is not None and (mine.kind, mine.shape, mine.dtype) != (theirs.kind, theirs.shape, theirs.dtype):
                raise ConfigError(
                    f"column {column!r} is {mine.kind} {mine.dtype} {mine.shape} in mixture source {name!r} but {theirs.kind} "
                    f"{theirs.dtype} {theirs.shape} in {first_name!r}; a batch needs one shape and dtype per column"
                )
    statistics = mixture_statistics([opened[n].stats for n in mixture.names], [mixture.weights[n] for n in mixture.names])
    sources = open_sources(mixture, lambda name, _: ArrayDataset(opened[name], columns, sampling=sampling, statistics=statistics))
    return RowMixture(mixture, sources, sampling=sampling)


def mixture_statistics(stats: list[dict], weights: list) -> dict:
    """Per column, the mean and std of the weighted blend of the sources (overall and per recorded axis).
    A column or axis some source does not record is left out: a transform then asks for mean= and std=."""
    out: dict = {}
    names = set.intersection(*(set(s or {}) for s in stats)) if stats else set()
    for column in names:
        records = [s[column] for s in stats]
        combined = _blend(records, weights)
        keys = set.intersection(*(set(r) for r in records))
        for key in (k for k in keys if k.startswith("axis")):
            blended = _blend([r[key] for r in records], weights)
            if blended:
                combined[key] = blended
        if combined:
            out[column] = combined
    return out


def _blend(records: list[dict], weights: list) -> dict:
    means, stds = [r.get("mean") for r in records], [r.get("std") for r in records]
    if any(m is None for m in means) or any(s is None for s in stds):
        return {}
    if all(isinstance(m, list) for m in means):
        if len({len(m) for m in means}) != 1:
            return {}
        blended = [_moments([m[i] for m in means], [s[i] for s in stds], weights) for i in range(len(means[0]))]
        if any(b is None for b in blended):
            return {}
        return {"mean": [b[0] for b in blended], "std": [b[1] for b in blended]}
    if any(isinstance(m, list) for m in means):
        return {}
    moments = _moments(means, stds, weights)
    return {} if moments is None else {"mean": moments[0], "std": moments[1]}


def _moments(means: list, stds: list, weights: list):
    if any(m is None or s is None for m, s in zip(means, stds)):
        return None
    w = [float(x) for x in weights]
    mean = sum(wi * m for wi, m in zip(w, means))
    second = sum(wi * (s * s + m * m) for wi, m, s in zip(w, means, stds))
    return mean, math.sqrt(max(second - mean * mean, 0.0))
