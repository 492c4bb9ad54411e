"""Build the demo corpus (and larger benchmark corpora) from real text on this machine.

    python fastload/assets/build_demo_corpus.py --out fastload/assets/demo_corpus.jsonl.gz --max-mb 6

Sources, in a fixed order so the output is the same on every machine with
the same files: English prose from Debian's package documentation
(/usr/share/doc: READMEs, NEWS, changelogs), source code with its comments
and docstrings (the Python standard library, then, for larger corpora, the
system's Python packages and C/C++ headers), and multilingual text from the
gettext translation catalogues under /usr/share/locale (each catalogue
becomes one document of translated messages). Documents are interleaved
round-robin across the three kinds, so any prefix is a mix, and each is one
JSON line `{"text": ..., "source": ..., "kind": ...}`.

The extra code sources only follow the standard library, so a corpus that
the standard library alone can fill (the shipped demo corpus, ~6 MB) is
unchanged by them; they let `bench/convert.py` build its ~200 MB corpus
(about 126 MB is all the other sources hold on a stock machine):

    python fastload/assets/build_demo_corpus.py --out bench/.cache/corpus-200mb.jsonl --max-mb 200

This script runs offline, is kept in the repository so the shipped file can
be rebuilt, and is not imported by fastload.
"""

from __future__ import annotations

import argparse
import gettext
import gzip
import io
import itertools
import json
import sys
import sysconfig
from pathlib import Path

MIN_CHARS = 200
MAX_CHARS = 200_000


def _read_text(path: Path) -> str | None:
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    if "\x00" in text or not MIN_CHARS <= len(text) <= MAX_CHARS:
        return None
    return text


def prose() -> "itertools.Iterator[tuple[str, str]]":
    root = Path("/usr/share/doc")
    names = ("README", "NEWS", "changelog", "TODO", "FAQ", "copyright")
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name.split(".")[0] in names:
            text = _read_text(path)
            if text:
                yield str(path), text


# Code read after the standard library, in this order: fixed system folders (not
# the running interpreter's site-packages, which differ between virtualenvs).
EXTRA_CODE = (("/usr/lib/python3/dist-packages", "*.py"), ("/usr/include", "*"))


def code() -> "itertools.Iterator[tuple[str, str]]":
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        text = _read_text(path)
        if text:
            yield str(path.relative_to(root.parent)), text
    for folder, pattern in EXTRA_CODE:
        for path in sorted(Path(folder).rglob(pattern)):
            if path.is_file() and not path.is_symlink():
                text = _read_text(path)
                if text:
                    yield str(path), text


def translations() -> "itertools.Iterator[tuple[str, str]]":
    root = Path("/usr/share/locale")
    for path in sorted(root.rglob("*.mo")):
        try:
            catalog = gettext.GNUTranslations(io.BytesIO(path.read_bytes()))
        except (OSError, UnicodeDecodeError, Exception):  # a malformed catalogue is simply not used
            continue
        messages = [m for m in catalog._catalog.values() if isinstance(m, str) and m.strip()]
        text = "\n".join(messages)
        if MIN_CHARS <= len(text) <= MAX_CHARS:
            yield str(path), text


def build(out: Path, max_bytes: int) -> tuple[int, int]:
    written = docs = 0
    streams = [(kind, gen()) for kind, gen in (("prose", prose), ("code", code), ("translation", translations))]
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(out, "wt", encoding="utf-8") as f:
        while streams and written < max_bytes:
            for kind, stream in list(streams):
                item = next(stream, None)
                if item is None:
                    streams.remove((kind, stream))
                    continue
                line = json.dumps({"text": item[1], "source": item[0], "kind": kind}, ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode())
                docs += 1
    return docs, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--max-mb", type=float, default=6.0, help="stop after this many MB of JSON Lines")
    args = parser.parse_args()
    docs, written = build(args.out, int(args.max_mb * 1e6))
    print(f"{args.out}: {docs:,} documents, {written / 1e6:.1f} MB of JSON Lines", file=sys.stderr)


if __name__ == "__main__":
    main()
