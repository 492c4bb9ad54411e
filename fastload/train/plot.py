"""A PNG of a run: training and validation loss, and the share of step time spent waiting for data.

matplotlib is an optional dependency (`pip install "fastload[train]"`):
without it, `plot_metrics` warns once, says how to get the plot, and
returns None; the numbers are all in `metrics.jsonl` anyway.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["plot_metrics"]


def plot_metrics(records: list[dict], path: str | os.PathLike, *, title: str = "") -> Path | None:
    """Draw `records` (from `MetricsLog`) into the PNG at `path`; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            "the training plot needs matplotlib, which is not installed: pip install 'fastload[train]' "
            "(or matplotlib); the metrics are in metrics.jsonl",
            stacklevel=2,
        )
        return None
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    mixed = [r for r in train if r.get("sources")]
    rows = 3 if mixed else 2
    figure, axes = plt.subplots(rows, 1, sharex=True, figsize=(8, 6 + 2 * (rows - 2)), height_ratios=(2, 1, 1)[:rows])
    loss_axes, wait_axes = axes[0], axes[1]
    loss_axes.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        loss_axes.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation loss")
    loss_axes.set_ylabel("loss (nats/token)")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    wait_axes.plot([r["step"] for r in train], [r["data_wait_pct"] for r in train], color="tab:red")
    wait_axes.set_ylabel("data wait (% of step)")
    wait_axes.set_ylim(bottom=0)
    wait_axes.grid(alpha=0.3)
    if mixed:  # a mixture: the tokens each source has delivered
        source_axes = axes[2]
        for name in mixed[-1]["sources"]:
            source_axes.plot([r["step"] for r in mixed], [r["sources"][name]["tokens"] / 1e6 for r in mixed], label=name)
        source_axes.set_ylabel("tokens read (M)")
        source_axes.legend(fontsize="small")
        source_axes.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
