"""PNG charts of benchmark results (matplotlib, a bench requirement only; the product never imports this).

    throughput(rows, "bench/results/throughput.png")   # one panel per benchmark, a bar per contender
    scaling(rows, "bench/results/scaling.png")         # throughput over num_workers, a line per loader
    loader_tokens(payload, "tokens.png")               # both, for one bench/loader_tokens.py JSON

`rows` are the summary rows `_summary.py` makes from every script's JSON:
dicts with benchmark, contender, workers, value, unit and status. A row that
did not run (a peer not installed, or failed) is drawn as an empty bar with
its status written in, so a chart never hides a missing peer. The Agg
backend is used: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import _summary

__all__ = ["throughput", "scaling", "loader_tokens"]

FASTLOAD_COLOR, PEER_COLOR, BASELINE_COLOR = "#d62728", "#7f7f7f", "#1f77b4"


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the benchmark charts need matplotlib: pip install -r bench/requirements.txt") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: dict) -> str:
    workers = row.get("workers")
    if workers in (None, ""):
        return row["contender"]
    return row["contender"] + (f", {workers} w" if str(workers).isdigit() else f", {workers}")


def throughput(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """One horizontal bar chart per benchmark: each contender's median throughput (value, in its unit)."""
    plt = _pyplot()
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in rows))
    heights = [max(2.0, 0.28 * sum(r["benchmark"] == b for r in rows) + 1.0) for b in benchmarks]
    fig, axes = plt.subplots(len(benchmarks), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, benchmark in zip(axes[:, 0], benchmarks):
        mine = [r for r in rows if r["benchmark"] == benchmark]
        labels = [_label(r) for r in mine]
        values = [r["value"] if r["status"] == "ok" and r["value"] is not None else 0.0 for r in mine]
        colors = [FASTLOAD_COLOR if "fastload" in r["contender"] else BASELINE_COLOR if r.get("baseline") else PEER_COLOR for r in mine]
        y = range(len(mine))
        ax.barh(list(y), values, color=colors)
        top = max(values) if any(values) else 1.0
        for i, (r, v) in enumerate(zip(mine, values)):
            text = f"{v:,.1f}" + (f"  ({r['ratio']})" if r.get("ratio") else "") if r["status"] == "ok" else r["status"]
            ax.text(v + top * 0.01, i, text, va="center", fontsize=7, color="black" if r["status"] == "ok" else "#b00")
        ax.set_yticks(list(y), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.3)
        ax.set_title(f"{benchmark} ({mine[0]['unit']}, median; ratio to the baseline in blue)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def scaling(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Throughput over num_workers, a line per contender, one panel per benchmark that ran several worker counts."""
    plt = _pyplot()
    benchmarks = [b for b in dict.fromkeys(r["benchmark"] for r in rows)
                  if len({r["workers"] for r in rows if r["benchmark"] == b and isinstance(r["workers"], int)}) > 1]
    if not benchmarks:
        benchmarks = list(dict.fromkeys(r["benchmark"] for r in rows))[:1]
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(6 * len(benchmarks), 4.5), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        mine = [r for r in rows if r["benchmark"] == benchmark and isinstance(r["workers"], int)]
        for contender in dict.fromkeys(r["contender"] for r in mine):
            points = sorted((r["workers"], r["value"]) for r in mine if r["contender"] == contender and r["status"] == "ok")
            if not points:
                ax.plot([], [], label=f"{contender}: {next(r['status'] for r in mine if r['contender'] == contender)}", linestyle="none")
                continue
            style = {"linewidth": 2.5} if "fastload" in contender else {"linewidth": 1, "linestyle": "--"}
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=contender, **style)
        workers = sorted({r["workers"] for r in mine})
        ax.set_xticks(workers)
        ax.set_xlabel("num_workers")
        ax.set_ylabel(mine[0]["unit"] if mine else "")
        ax.set_yscale("log")
        ax.set_title(f"{benchmark}: scaling over num_workers", fontsize=9)
        ax.legend(fontsize=6, loc="best")
        ax.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def loader_tokens(payload: dict, path: str | Path) -> Path:
    """bench/loader_tokens.py's JSON as one PNG: bars per contender and worker count, and the scaling lines."""
    rows = _summary.ROWS["loader_tokens"](payload)
    path = Path(path)
    throughput(rows, path.with_name(path.stem + "-throughput.png"))
    return scaling(rows, path)


def _save(fig, plt, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
