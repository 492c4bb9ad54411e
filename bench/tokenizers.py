"""Tokenizer throughput: fastload vs Hugging Face tokenizers vs tiktoken (vs bpe-openai).

    python bench/tokenizers.py [--mb 20] [--repeats 3] [--json bench/results/tokenizers.json]

The text is the held-out tenth of the corpus the default vocabulary is built
from (`fastload/assets/tokenizer/build_default_vocab.py`: gettext
translations in a few hundred languages, documentation, Python sources),
capped at `--mb` MB of UTF-8. Each contender runs in a child process of its
own (see `_harness.py`) and encodes every document, one thread unless the
row says otherwise:

* fastload: `Tokenizer.encode_arrow` on a pyarrow string column (1 and 2 threads);
* HF tokenizers: `encode_batch(..., add_special_tokens=False)` with
  `RAYON_NUM_THREADS=1` (only where a tokenizer.json exists: the default vocab);
* tiktoken: `encode_ordinary_batch(num_threads=1)` on an `Encoding` built from
  the same ranks (for the default vocab: its ids written as a rank file);
* bpe-openai (cl100k/o200k only, if installed): its Rust `encode` per document.

Reported: median MB/s (min–max) and million tokens/s over the repeats after
one warm-up, the ratio to tiktoken measured in the same run, and whether the
ids are identical to the reference (sha256 of all ids). A last table times a
fresh process doing `import` + load + first encode with a warm Numba cache.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# This file is named like the `tokenizers` package: keep its folder off the
# import path so `import tokenizers` finds Hugging Face's, and load the
# shared harness by file path instead.
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("_harness", BENCH / "_harness.py")
_harness = importlib.util.module_from_spec(_spec)
sys.modules["_harness"] = _harness
_spec.loader.exec_module(_harness)
child_main, format_table, machine_info = _harness.child_main, _harness.format_table, _harness.machine_info
measure, run_child, write_json, status = _harness.measure, _harness.run_child, _harness.write_json, _harness.status

DEFAULT_JSON = ROOT / "fastload" / "assets" / "tokenizer" / "tokenizer.json"
VOCABS = ("default", "cl100k", "o200k")


# ---------------------------------------------------------------- setup (parent)
def build_corpus(path: pathlib.Path, max_mb: float) -> dict:
    import pyarrow as pa

    script = DEFAULT_JSON.with_name("build_default_vocab.py")
    spec = importlib.util.spec_from_file_location("build_default_vocab", script)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    docs = list(builder.corpus_documents("heldout", max_bytes=int(max_mb * 1e6)))
    arr = pa.array(docs, type=pa.large_string())
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("text", pa.large_string())])) as w:
        w.write_table(pa.table({"text": arr}))
    return {"documents": len(docs), "mb": arr.buffers()[2].size / 1e6}


def write_default_ranks(path: pathlib.Path) -> None:
    from fastload.tokenizer.vocab import bytes_to_unicode

    spec = json.loads(DEFAULT_JSON.read_text())
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    added = {t["content"] for t in spec["added_tokens"]}
    lines = [f"{base64.b64encode(bytes(char_to_byte[c] for c in text)).decode()} {i}"
             for text, i in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1]) if text not in added]
    path.write_text("\n".join(lines) + "\n")


def openai_ranks(name: str, folder: pathlib.Path) -> pathlib.Path | None:
    import gzip

    try:
        import bpe_openai
    except ImportError:
        return None
    out = folder / f"{name}_base.tiktoken"
    if not out.exists():
        src = pathlib.Path(bpe_openai.__file__).parent / "data" / f"{name}_base.tiktoken.gz"
        out.write_bytes(gzip.decompress(src.read_bytes()))
    return out


# ---------------------------------------------------------------- contenders (children)
def load_docs(corpus: str):
    import pyarrow as pa

    with pa.memory_map(corpus) as source:
        return pa.ipc.open_file(source).read_all().column("text").combine_chunks()


def ids_digest(chunks) -> tuple[int, str]:
    import numpy as np

    h, n = hashlib.sha256(), 0
    for ids in chunks:
        a = np.asarray(ids, dtype=np.uint32)
        n += a.shape[0]
        h.update(a.tobytes())
    return n, h.hexdigest()


def child(args) -> dict:
    arr = load_docs(args.corpus)
    nbytes = arr.buffers()[2].size
    if args.contender == "fastload":
        from fastload.tokenizer import Tokenizer

        tok = (Tokenizer.default() if args.vocab == "default"
               else Tokenizer.from_tiktoken(args.ranks, pattern=args.vocab))
        run = lambda: tok.encode_arrow(arr, num_threads=args.threads)  # noqa: E731
        digest = lambda ids_offsets: ids_digest([ids_offsets[0]])  # noqa: E731
    else:
        docs = arr.to_pylist()
        if args.contender == "hf":
            from tokenizers import Tokenizer as HF

            hf = HF.from_file(str(DEFAULT_JSON))
            run = lambda: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]  # noqa: E731
        elif args.contender == "tiktoken":
            import tiktoken
            from tiktoken.load import load_tiktoken_bpe

            from fastload.tokenizer import patterns

            regex = {"default": patterns.CL100K_PATTERN, "cl100k": patterns.CL100K_POSSESSIVE_PATTERN,
                     "o200k": patterns.O200K_PATTERN}[args.vocab]
            enc = tiktoken.Encoding(args.vocab, pat_str=regex, mergeable_ranks=load_tiktoken_bpe(args.ranks),
                                    special_tokens={})
            run = lambda: enc.encode_ordinary_batch(docs, num_threads=1)  # noqa: E731
        elif args.contender == "bpe-openai":
            from bpe_openai import _bindings

            bpe = _bindings.tokenizer_for_encoding(f"{args.vocab}_base")
            run = lambda: [bpe.encode(d) for d in docs]  # noqa: E731
        else:
            raise ValueError(f"unknown contender {args.contender!r}")
        digest = ids_digest
    result = {}

    def timed():
        result["out"] = run()

    cpu0 = time.process_time()
    timing = measure(timed, warmup=1, repeats=args.repeats)
    cpu_s = (time.process_time() - cpu0) / (args.repeats + 1)
    num_tokens, sha = digest(result["out"])
    return {"timing": timing.to_json(), "bytes": nbytes, "tokens": num_tokens, "sha256": sha, "cpu_s": cpu_s}


def startup_child(args) -> dict:
    started = time.perf_counter()
    from fastload.tokenizer import Tokenizer

    tok = Tokenizer.default() if args.vocab == "default" else Tokenizer.from_tiktoken(args.ranks, pattern=args.vocab)
    loaded = time.perf_counter()
    tok.encode("Hello, world! This is the first encode in a new process.")
    done = time.perf_counter()
    return {"load_s": loaded - started, "first_encode_s": done - loaded, "total_s": done - started}


# ---------------------------------------------------------------- parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="MB of held-out text to encode (default 20)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocabs", default=",".join(VOCABS), help="comma list of default,cl100k,o200k")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--contender", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vocab", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ranks", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "encode":
        return child_main(lambda: child(args))
    if args.child == "startup":
        return child_main(lambda: startup_child(args))

    work = pathlib.Path(tempfile.mkdtemp(prefix="fastload-bench-tok-"))
    corpus = work / "heldout.arrow"
    info = build_corpus(corpus, args.mb)
    print(f"corpus: {info['documents']:,} held-out documents, {info['mb']:.1f} MB UTF-8", file=sys.stderr)
    ranks = {"default": work / "default.tiktoken"}
    write_default_ranks(ranks["default"])
    for name in ("cl100k", "o200k"):
        ranks[name] = openai_ranks(name, work)

    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    rows, results = [], []
    for vocab in args.vocabs.split(","):
        if ranks.get(vocab) is None:  # reported in the table, not dropped
            error = "not installed: bpe-openai (it ships the OpenAI rank files this vocabulary needs)"
            print(f"{vocab}: {error}", file=sys.stderr)
            results.append({"vocab": vocab, "contender": "all", "error": error, "status": "not installed"})
            rows.append([vocab, "all", "not installed", "", "", "", "", error])
            continue
        contenders = [("tiktoken", 1), ("fastload", 1), ("fastload", 2)]
        contenders += [("hf", 1)] if vocab == "default" else [("bpe-openai", 1)]
        measured = {}
        for name, threads in contenders:
            argv = [sys.executable, __file__, "--child", "encode", "--contender", name, "--vocab", vocab,
                    "--ranks", str(ranks[vocab]), "--corpus", str(corpus), "--threads", str(threads),
                    "--repeats", str(args.repeats)]
            print(f"  {vocab}: {name} x{threads} ...", file=sys.stderr)
            measured[(name, threads)] = run_child(argv, timeout_s=1800, env=env)
        base = measured[("tiktoken", 1)]
        for (name, threads), r in measured.items():
            label = f"{name} ({threads} threads)" if threads > 1 else name
            results.append({"vocab": vocab, "contender": label, "threads": threads, "status": status(r), **r})
            if "error" in r:
                rows.append([vocab, label, status(r), "", "", "", "", r["error"].splitlines()[-1][:80]])
                continue
            t = r["timing"]
            mbs = r["bytes"] / t["median_s"] / 1e6
            spread = f"{r['bytes'] / t['max_s'] / 1e6:.1f}–{r['bytes'] / t['min_s'] / 1e6:.1f}"
            if "error" in base:  # no tiktoken: no ratio and no reference ids, said so rather than guessed
                ratio, same = "", "no reference"
            else:
                ratio = f"{base['timing']['median_s'] / t['median_s']:.2f}x"
                same = "yes" if r["sha256"] == base["sha256"] else "NO"
            rows.append([vocab, label, f"{mbs:.2f}", spread, f"{r['tokens'] / t['median_s'] / 1e6:.2f}", ratio, same, ""])
    print()
    print(format_table(["vocab", "tokenizer", "MB/s", "min–max", "Mtok/s", "vs tiktoken", "same ids", "note"], rows, align="llrrrrll"))

    startup_rows = []
    for vocab in ("default", "cl100k"):
        if ranks.get(vocab) is None:
            continue
        argv = [sys.executable, __file__, "--child", "startup", "--vocab", vocab, "--ranks", str(ranks[vocab])]
        r = run_child(argv, timeout_s=300, env=env)  # first run may compile; the second uses the cache
        r = run_child(argv, timeout_s=300, env=env)
        results.append({"vocab": vocab, "contender": "startup (warm cache)", **r})
        startup_rows.append([vocab, *(f"{r[k]:.3f}" if k in r else r.get("error", "")[:40]
                                      for k in ("load_s", "first_encode_s", "total_s"))])
    print()
    print(format_table(["vocab", "import+load s", "first encode s", "total s"], startup_rows))
    if args.json:
        write_json(args.json, {"machine": machine_info(), "corpus": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
