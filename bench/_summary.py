"""Every benchmark script's JSON as uniform summary rows: one per contender, with its baseline ratio.

    rows = ROWS["loader_tokens"](json.loads(path.read_text()))
    # [{"benchmark", "contender", "workers", "value", "unit", "min", "max", "status", "ratio", "baseline", "note"}, ...]

The baseline of each benchmark is the tool a user would reach for without
fastload, measured in the same run: pyarrow's default Parquet writer
(conversion), tiktoken on the same vocabulary (tokenizers), torch's
DataLoader at the same worker count (generic loader), nanoGPT's memmap at
the same worker count (token loader), the naive torch loader at the same
worker count (trainer). A contender that did not run keeps
its row, with status "not installed" or "FAILED" and the error as its note.
"""

from __future__ import annotations

from _harness import ratio, status

__all__ = ["ROWS", "rows_for"]


def _row(benchmark: str, contender: str, workers, value, unit: str, result: dict, *, lo=None, hi=None, baseline: bool = False) -> dict:
    return {
        "benchmark": benchmark,
        "contender": contender,
        "workers": workers,
        "value": value if status(result) == "ok" else None,
        "min": lo,
        "max": hi,
        "unit": unit,
        "status": status(result),
        "baseline": baseline,
        "ratio": "",
        "note": _one_line(result["error"]) if result.get("error") else (result.get("note") or ""),
    }


def _with_ratios(rows: list[dict], key) -> list[dict]:
    """Fill `ratio` = value / the value of the baseline row that shares `key(row)`."""
    base = {key(r): r["value"] for r in rows if r["baseline"] and r["value"]}
    for r in rows:
        if r["value"] is not None:
            r["ratio"] = ratio(r["value"], base.get(key(r)))
    return rows


def rows_convert(payload: dict) -> list[dict]:
    rows = []
    mb = payload["corpus"]["bytes"] / 1e6
    for r in payload["results"]:
        value = lo = hi = None
        if "median_s" in r:
            value, lo, hi = mb / r["median_s"], mb / r["max_s"], mb / r["min_s"]
        rows.append(_row("convert", r["label"], r["workers"], value, "MB/s of JSON Lines in", r, lo=lo, hi=hi, baseline=r["case"] == "parquet"))
    return _with_ratios(rows, lambda r: None)


def rows_tokenizers(payload: dict) -> list[dict]:
    rows = []
    for r in payload["results"]:
        if r.get("contender", "").startswith("startup"):
            continue
        value = lo = hi = None
        if "timing" in r:
            t = r["timing"]
            value, lo, hi = r["bytes"] / t["median_s"] / 1e6, r["bytes"] / t["max_s"] / 1e6, r["bytes"] / t["min_s"] / 1e6
        name = f"{r['contender']} [{r['vocab']}]"
        row = _row("tokenizers", name, r.get("threads", 1), value, "MB/s of text", r, lo=lo, hi=hi, baseline=r["contender"] == "tiktoken")
        row["vocab"] = r["vocab"]
        if r.get("sha256") and value is not None:
            base = next((b for b in payload["results"] if b["vocab"] == r["vocab"] and b.get("contender") == "tiktoken"), {})
            row["note"] = "" if not base.get("sha256") else "same ids" if base["sha256"] == r["sha256"] else "DIFFERENT ids"
        rows.append(row)
    return _with_ratios(rows, lambda r: r["vocab"])


def rows_loader_generic(payload: dict) -> list[dict]:
    rows = []
    for r in payload["results"]:
        rows.append(_row("loader_generic", f"{r['loader']} ({r['workload']})", r["workers"], r.get("batches_per_s"), "batches/s", r,
                         lo=r.get("batches_per_s_min"), hi=r.get("batches_per_s_max"), baseline=r["loader"] == "torch"))
        rows[-1]["workload"] = r["workload"]
    return _with_ratios(rows, lambda r: (r["workload"], r["workers"]))


def rows_loader_tokens(payload: dict) -> list[dict]:
    rows = []
    for r in payload["results"]:
        per_s = r.get("tokens_per_s")
        row = _row("loader_tokens", r["label"], r["workers"], per_s / 1e6 if per_s else None, "M tokens/s", r,
                   lo=r.get("tokens_per_s_min", 0) / 1e6 if per_s else None, hi=r.get("tokens_per_s_max", 0) / 1e6 if per_s else None,
                   baseline=r["name"].startswith("memmap-"))
        rows.append(row)
    return _with_ratios(rows, lambda r: r["workers"])


def rows_train(payload: dict) -> list[dict]:
    rows = []
    for r in payload["results"]:
        row = _row("train", r.get("label", r.get("name", "?")), r.get("workers"), r.get("tokens_per_s"), "training tokens/s", r,
                   baseline=str(r.get("name", "")).startswith("naive"))
        if row["value"] is not None:
            row["note"] = f"{r['step_ms']:.0f} ms/step, data wait {r['data_wait_pct']:.2f}%"
        rows.append(row)
    return _with_ratios(rows, lambda r: r["workers"])


def rows_generic(benchmark: str, payload: dict) -> list[dict]:
    """A script this module does not know (the trainer): its `results` rows if they say `name` and `value`."""
    rows = []
    for r in payload.get("results", []):
        if isinstance(r, dict) and "name" in r and "value" in r:
            rows.append(_row(benchmark, str(r["name"]), r.get("workers"), r["value"], str(r.get("unit", "")), r, baseline=bool(r.get("baseline"))))
    return _with_ratios(rows, lambda r: r["workers"])


ROWS = {
    "convert": rows_convert,
    "tokenizers": rows_tokenizers,
    "loader_generic": rows_loader_generic,
    "loader_tokens": rows_loader_tokens,
    "train": rows_train,
}


def rows_for(benchmark: str, payload: dict) -> list[dict]:
    make = ROWS.get(benchmark)
    return make(payload) if make is not None else rows_generic(benchmark, payload)


def _one_line(text: str, limit: int = 160) -> str:
    text = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."
