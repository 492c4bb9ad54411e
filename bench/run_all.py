"""The whole benchmark suite in one command: every comparison, one summary table, JSON and PNG charts.

    python bench/run_all.py --quick          # a few minutes: small corpora, one repeat (smoke test + rough figures)
    python bench/run_all.py --full           # the settings bench/README.md's tables come from (an hour or more)
    python bench/run_all.py --quick --only loader_tokens,convert --out /tmp/results

Each step is one script of this folder, run as a child process with the
arguments of the chosen mode (the table below, also printed at the start):

  convert         bench/convert.py         JSON Lines -> each library's format (MB/s in)
  tokenizers      bench/tokenizers.py      byte-level BPE (MB/s of text)
  loader_generic  bench/loader_generic.py  torch's vs fastload's DataLoader on in-memory items (batches/s)
  loader_tokens   bench/loader_tokens.py   packed token batches from a real corpus, five peers (M tokens/s)
  mixture         bench/mixture.py         a three-source mixture vs one dataset; exactness; state size and load time
  remote          bench/remote.py          the corpus from a local S3 server through a latency proxy: fastload, MosaicML, LitData
  train           bench/train.py           the trainer fed by fastload (if the script is in this checkout)

Every script measures its contenders in child processes of their own, after
a warm-up, as medians of repeats, against a baseline measured in the same
run (see `_harness.py`). This one collects their JSON into `summary.json`,
prints one table (a row per contender, its ratio to the baseline), and draws
`throughput.png` (a bar per contender and worker count) and `scaling.png`
(throughput over num_workers 0/1/2, and 4/8/16 where the machine has them).
A peer that is not installed or fails keeps its row, marked so, with its
error; a script that fails or is missing is a row of its own. Output goes
to `bench/results/quick/` or `bench/results/full/` (`--out` to change),
with each script's full output in `<step>.log`.

--quick settings: 20 MB corpora instead of 200 MB, 2 MB of text for the
tokenizers (default and cl100k vocabularies), one repeat after one warm-up,
40 timed token batches (lz4 left out), 6 trainer steps after 3 with 2
workers only, one cold+warm pair per remote contender and latency. Good for "does everything run, and roughly how do
they compare"; quote --full figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _plots  # noqa: E402  (imports matplotlib only when drawing)
import _summary  # noqa: E402
from _harness import default_workers, format_table, machine_info, write_json  # noqa: E402

# bench/ holds modules named like the packages the peers import (bench/tokenizers.py vs HF `tokenizers`)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

REPO = BENCH.parent


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    timeout_s: float  # for the whole script in --full; --quick allows a tenth, at least 5 minutes


def _steps() -> list[Step]:
    workers = ",".join(map(str, default_workers()))
    return [
        Step("convert", "convert.py", ("--corpus-mb", "20", "--repeats", "1", "--warmup", "1"), ("--repeats", "5"), 4 * 3600),
        Step("tokenizers", "tokenizers.py", ("--mb", "2", "--repeats", "1", "--vocabs", "default,cl100k"), ("--mb", "20", "--repeats", "3"), 2 * 3600),
        Step("loader_generic", "loader_generic.py", ("--rounds", "1", "--repeats", "3", "--workers", "0,2"),
             ("--rounds", "3", "--repeats", "3", "--workers", workers), 2 * 3600),
        Step("loader_tokens", "loader_tokens.py",
             ("--quick", "--corpus-mb", "20", "--workers", "0,1,2", "--only", "naive,memmap,litdata,hf,mds,fastload,fastload-otf,write-ref"),
             ("--workers", workers), 6 * 3600),
        Step("mixture", "mixture.py", ("--corpus-mb", "20", "--repeats", "1", "--batches", "40", "--exact-batches", "2000"), (), 2 * 3600),
        Step("remote", "remote.py", ("--corpus-mb", "20", "--repeats", "1", "--batches", "360"), (), 3 * 3600),
        Step("train", "train.py", ("--steps", "6", "--warmup-steps", "3", "--repeats", "1", "--only", "fastload-2,naive-2"), (), 2 * 3600),
    ]


STEPS = {s.name: s for s in _steps()}


def run_step(step: Step, *, mode: str, out: Path) -> dict:
    """Run one script, its output shown and kept in `<name>.log`; its JSON read back. Never raises for the script's failure."""
    script = BENCH / step.script
    json_path = out / f"{step.name}.json"
    argv = [sys.executable, str(script), *(step.quick if mode == "quick" else step.full), "--json", str(json_path)]
    record = {"step": step.name, "command": _shown(argv), "json": str(json_path)}
    if not script.exists():
        return {**record, "status": "missing", "error": f"bench/{step.script} is not in this checkout"}
    json_path.unlink(missing_ok=True)
    timeout_s = step.timeout_s if mode == "full" else max(300.0, step.timeout_s / 10)
    started = time.perf_counter()
    log = out / f"{step.name}.log"
    print(f"\n=== {step.name}: {record['command']}", flush=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        tail: list[str] = []
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                f.write(line)
                tail = (tail + [line.rstrip()])[-8:]
                if time.perf_counter() - started > timeout_s:
                    proc.kill()
                    tail.append(f"killed after {timeout_s:.0f} s")
                    break
        finally:
            proc.wait()
    record["seconds"] = round(time.perf_counter() - started, 1)
    if proc.returncode != 0 or not json_path.exists():
        return {**record, "status": "FAILED", "error": f"exit code {proc.returncode}: " + " | ".join(t for t in tail if t)[-400:]}
    return {**record, "status": "ok", "payload": json.loads(json_path.read_text())}


def _shown(argv: list[str]) -> str:
    parts = ["python" if a == sys.executable else os.path.relpath(a, REPO) if a.startswith(str(REPO)) else a for a in argv]
    return " ".join(parts)


def summary_rows(records: list[dict]) -> list[dict]:
    rows = []
    for record in records:
        if record["status"] != "ok":
            rows.append({"benchmark": record["step"], "contender": f"bench/{STEPS[record['step']].script}", "workers": None, "value": None,
                         "min": None, "max": None, "unit": "", "status": record["status"], "baseline": False, "ratio": "", "note": record["error"]})
            continue
        found = _summary.rows_for(record["step"], record["payload"])
        if not found:  # ran, but wrote nothing this suite can tabulate (its log has its own table)
            found = [{"benchmark": record["step"], "contender": f"bench/{STEPS[record['step']].script}", "workers": None, "value": None,
                      "min": None, "max": None, "unit": "", "status": "ok", "baseline": False, "ratio": "", "note": f"see {record['step']}.log"}]
        rows += found
    return rows


def format_summary(rows: list[dict]) -> str:
    table_rows = []
    for r in rows:
        if r["value"] is None:
            value = r["status"] if r["status"] != "ok" else ""
        else:
            spread = f" ({r['min']:,.1f}-{r['max']:,.1f})" if r.get("min") is not None and r.get("max") is not None and r["min"] != r["max"] else ""
            value = f"{r['value']:,.2f}{spread}"
        workers = "" if r["workers"] is None else str(r["workers"])
        table_rows.append([r["benchmark"], r["contender"], workers, value, r["unit"], r["ratio"], _short(r["note"])])
    header = ["benchmark", "contender", "workers", "median (min-max)", "unit", "vs baseline", "note"]
    return format_table(header, table_rows, align="llrrlrl")


def markdown_summary(rows: list[dict]) -> str:
    lines = ["| benchmark | contender | workers | median (min–max) | unit | vs baseline | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["value"] is None:
            value = f"**{r['status']}**" if r["status"] != "ok" else ""
        else:
            spread = f" ({r['min']:,.1f}–{r['max']:,.1f})" if r.get("min") is not None and r.get("max") is not None and r["min"] != r["max"] else ""
            value = f"{r['value']:,.2f}{spread}"
        workers = "" if r["workers"] is None else str(r["workers"])
        note = _short(r["note"]).replace("|", "/")
        lines.append(f"| {r['benchmark']} | {r['contender']} | {workers} | {value} | {r['unit']} | {r['ratio']} | {note} |")
    return "\n".join(lines)


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="small corpora, one repeat: a few minutes")
    mode.add_argument("--full", action="store_const", dest="mode", const="full", help="the settings of bench/README.md's tables")
    parser.add_argument("--only", default=None, help=f"comma-separated steps, from: {', '.join(STEPS)}")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results/quick or bench/results/full)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG charts (no matplotlib needed)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in (args.only or ",".join(STEPS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; valid: {', '.join(STEPS)}")
    out = (args.out or BENCH / "results" / args.mode).resolve()
    out.mkdir(parents=True, exist_ok=True)

    machine = machine_info()
    started = time.perf_counter()
    print(f"fastload benchmark suite, --{args.mode}: {', '.join(names)}; {machine['cpus']} CPUs, {machine['memory_gb']} GB, "
          f"load average {machine['load_average_1m']}, {machine['date']}; results in {os.path.relpath(out, Path.cwd())}", flush=True)
    records = [run_step(STEPS[name], mode=args.mode, out=out) for name in names]
    total_s = time.perf_counter() - started
    machine["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    rows = summary_rows(records)

    print(f"\n=== summary (--{args.mode}, {total_s / 60:.1f} min; baselines: Parquet writer, tiktoken, torch DataLoader, memmap, naive trainer loader; same workers)\n")
    print(format_summary(rows))
    print("\nsteps: " + ", ".join(f"{r['step']} {r['status']}" + (f" ({r['seconds']:.0f} s)" if "seconds" in r else "") for r in records))
    summary = {
        "mode": args.mode,
        "machine": machine,
        "total_s": round(total_s, 1),
        "steps": [{k: v for k, v in r.items() if k != "payload"} for r in records],
        "rows": rows,
    }
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(markdown_summary(rows) + "\n")
    written = [out / "summary.json", out / "summary.md"]
    if not args.no_plots:
        try:
            title = f"fastload bench/run_all.py --{args.mode}, {machine['date'][:10]}, {machine['cpus']} CPUs"
            written.append(_plots.throughput([r for r in rows if r["value"] is not None or r["status"] != "ok"], out / "throughput.png", title=title))
            scaled = [r for r in rows if r["benchmark"] in ("loader_tokens", "loader_generic") and r["value"] is not None]
            if scaled:
                written.append(_plots.scaling(scaled, out / "scaling.png", title=title))
        except ImportError as exc:
            print(f"no charts: {exc}", file=sys.stderr)
    print("wrote " + ", ".join(os.path.relpath(p, Path.cwd()) for p in written))
    return 0 if all(r["status"] in ("ok", "missing") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
