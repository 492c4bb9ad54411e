"""Per-stage cost of converting JSON Lines, per core: parsing (old and new paths), then preparing and writing.

What it measures, on the first `--chunks` chunks of the corpus cut exactly as
`fastload convert` cuts them (`CHUNK_BYTES`, whole lines), in one thread, as
MB of JSON Lines per second per core:

  pyarrow     `pyarrow.json.read_json` alone, as parse.py calls it (one block, no threads)
  current     `parse_json_lines` with FASTLOAD_DISABLE_FLAT_JSON=1: prescan + pyarrow + float recheck
  scanner     `flat_json.read_flat_json_lines` alone: UTF-8 check + Numba scan + Arrow arrays
  parse       `parse_json_lines` as shipped: the scanner, the float recheck, the old path if refused
  prepare     `normalize.prepare_table` on the parsed tables (no tokenizer): the worker's step after parsing
  write       `DatasetWriter.write` of the prepared tables and `close()`: the main thread's step
  convert-*   the whole thing, `fastload.convert(corpus, out, workers=2)` of the whole corpus, with
              FASTLOAD_DISABLE_FLAT_JSON=1 (pyarrow) and without (scanner); its CPU column is MB per
              second of the process's CPU time, all threads
  first-call  importing the scanner and its first call: compiling (an empty Numba cache) and
              loading (the cache just filled), in seconds, not MB/s

Each case runs in a fresh child process (`_harness.run_child`); in a child,
one untimed pass over the chunks, then `--repeats` timed passes, median
taken, by the wall clock and by the thread's CPU time (the second is steadier
on a shared machine: the cases are single-threaded); `--rounds` children per case, interleaved, and the table gives the
median of the rounds' medians and their min–max.

    python bench/parse_json.py                                  # bench/.cache/corpus-200mb.jsonl, 8 chunks
    python bench/parse_json.py --corpus other.jsonl --chunks 4 --rounds 5 --json bench/results/parse_json.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path.insert(0, _BENCH)
from _harness import child_main, format_table, machine_info, measure, ratio, run_child, write_json  # noqa: E402

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_BENCH)]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "bench" / ".cache" / "corpus-200mb.jsonl"
CASES = ("pyarrow", "current", "scanner", "parse", "prepare", "write", "convert-pyarrow", "convert-scanner")
CHILD_TIMEOUT_S = 900


def _chunks(corpus: Path, num_chunks: int) -> list[bytearray]:
    """The first chunks, each in a writable buffer of its own as `line_pieces` gives them to the workers."""
    from fastload.convert.input_files import line_pieces
    from fastload.convert.sources import CHUNK_BYTES

    chunks = []
    for piece in line_pieces(corpus, None, piece_bytes=CHUNK_BYTES):
        chunks.append(bytearray(piece))
        if len(chunks) == num_chunks:
            break
    return chunks


def _parse_all(chunks: list[bytearray]) -> list:
    from fastload.convert.parse import parse_json_lines

    return [parse_json_lines(memoryview(c), "fail")[0] for c in chunks]


def _prepare(table):
    from fastload.convert.normalize import prepare_table

    return prepare_table(table, source="bench", columns=None, text_field="text")


def convert_child(case: str, corpus: Path, repeats: int) -> dict:
    """`fastload.convert` of the whole corpus with 2 workers; CPU time is the process's (all threads)."""
    import shutil

    import fastload

    if case == "convert-pyarrow":
        os.environ["FASTLOAD_DISABLE_FLAT_JSON"] = "1"
    out = Path(tempfile.mkdtemp(prefix="parse-json-bench-")) / "out"
    cpu_s = []

    def run():
        started = time.process_time()
        fastload.convert(corpus, out, workers=2, overwrite=True, quiet=True)
        cpu_s.append(time.process_time() - started)

    timing = measure(run, warmup=1, repeats=repeats)
    shutil.rmtree(out.parent)
    return {**timing.to_json(), "cpu_median_s": statistics.median(cpu_s[1:]), "bytes": corpus.stat().st_size}


def child(case: str, corpus: Path, num_chunks: int, repeats: int) -> dict:
    import pyarrow as pa

    if case.startswith("convert"):
        return convert_child(case, corpus, repeats)
    chunks = _chunks(corpus, num_chunks)
    if case == "current":
        os.environ["FASTLOAD_DISABLE_FLAT_JSON"] = "1"
    if case == "pyarrow":
        from fastload.convert.parse import _read_json

        def run():
            for c in chunks:
                _read_json(memoryview(c))

    elif case == "scanner":
        from fastload.convert.flat_json import read_flat_json_lines

        def run():
            for c in chunks:
                if read_flat_json_lines(memoryview(c)) is None:
                    raise RuntimeError("the scanner refused a chunk of this corpus")

    elif case in ("current", "parse"):

        def run():
            _parse_all(chunks)

    elif case == "prepare":
        tables = _parse_all(chunks)

        def run():
            for t in tables:
                _prepare(t)

    elif case == "write":
        from fastload.format.schema import Schema
        from fastload.format.writer import DatasetWriter

        prepared = [_prepare(t) for t in _parse_all(chunks)]
        schema = Schema(tuple(c for c in prepared[0][1].values() if c is not None))
        scratch = tempfile.mkdtemp(prefix="parse-json-bench-")
        runs = iter(range(1_000_000))

        def run():
            with DatasetWriter(Path(scratch) / f"run-{next(runs)}", schema) as writer:
                for table, _ in prepared:
                    writer.write(pa.Table.from_arrays(table.columns, schema=schema.arrow_schema()))

    else:
        raise ValueError(f"unknown case {case!r}; valid: {', '.join(CASES)}")
    cpu_s = []

    def timed_run():
        started = time.thread_time()
        run()
        cpu_s.append(time.thread_time() - started)

    timing = measure(timed_run, warmup=1, repeats=repeats)
    return {**timing.to_json(), "cpu_median_s": statistics.median(cpu_s[1:]), "bytes": sum(len(c) for c in chunks)}


def first_call() -> dict:
    """Seconds to import the scanner and make its first call, with an empty Numba cache, then with the cache filled."""
    found = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        code = (
            "import time; t = time.perf_counter(); from fastload.convert import flat_json; flat_json.warm_up(); "
            "import json; print(json.dumps({'seconds': time.perf_counter() - t}))"
        )
        for label in ("compile", "load"):
            result = run_child([sys.executable, "-c", code], timeout_s=CHILD_TIMEOUT_S, env=env)
            found[label] = result.get("seconds", result.get("error"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(lambda: child(args.child[0], args.corpus, args.chunks, args.repeats))
        return
    cases = args.cases.split(",")
    results: dict[str, list[dict]] = {case: [] for case in cases}
    for round_ in range(args.rounds):
        for case in cases[round_ % len(cases) :] + cases[: round_ % len(cases)]:
            argv = [sys.executable, __file__, "--child", case, "--corpus", str(args.corpus), "--chunks", str(args.chunks), "--repeats", str(args.repeats)]
            results[case].append(run_child(argv, timeout_s=CHILD_TIMEOUT_S, env={**os.environ, "PYTHONPATH": str(REPO)}))
    payload = {"machine": machine_info(), "corpus": str(args.corpus), "chunks": args.chunks, "cases": {}}
    medians = {}
    for case in cases:
        ok = [r for r in results[case] if "error" not in r]
        if ok:
            rates = [r["bytes"] / 1e6 / r["median_s"] for r in ok]
            cpu_rates = [r["bytes"] / 1e6 / r["cpu_median_s"] for r in ok]
            medians[case] = statistics.median(rates)
            payload["cases"][case] = {"mb_per_s": rates, "median_mb_per_s": medians[case], "cpu_mb_per_s": cpu_rates, "bytes": ok[0]["bytes"]}
    rows = []
    for case in cases:
        if case not in medians:
            rows.append([case, "FAILED", "", "", "", results[case][0]["error"][:100]])
            continue
        rates = payload["cases"][case]["mb_per_s"]
        cpu = statistics.median(payload["cases"][case]["cpu_mb_per_s"])
        rows.append([case, f"{medians[case]:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}", f"{cpu:,.0f}", ratio(medians[case], medians.get("current")), ""])
    payload["first_call_s"] = first_call()
    print(f"{args.corpus.name}: the first {args.chunks} chunks, one thread, median of {args.rounds} fresh processes")
    print(format_table(["case", "MB/s (wall)", "min-max", "MB/s (thread CPU)", "vs current", "error"], rows))
    print(f"first call (import + warm_up): {json.dumps(payload['first_call_s'])}")
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
