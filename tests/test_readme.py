"""Every code snippet in README.md runs as written, in order, where a new user would run it.

The working folder is what the README says a user has: it starts empty, the
Set up section's own `fastload demo`, `inspect` and `verify` commands run in
it, and then every ```python block runs in its own fresh interpreter, in
README order, so files a snippet writes (data/corpus, runs/...) are there for
the next one, as they would be for a user pasting them one after another.

A snippet that cannot run standalone (a GPU, several nodes) is marked in the
README with `<!-- not-run: reason -->` on the line before it; those are
counted, and every other block must succeed. `fastload ...` lines in
```bash blocks run when they are cheap (demo, inspect, verify); the
others (training for minutes, the benchmark, torchrun, GPU flags) are parsed
by the real argument parser without running, so a flag the README shows must
exist. Install and test commands (pip, venv, pytest) are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# How many python blocks the README marks `<!-- not-run: ... -->`. Raising it is a decision, not a way out.
EXPECTED_NOT_RUN = 0
# `fastload` subcommands a bash block's line runs for real; the rest are only parsed.
CHEAP_COMMANDS = ("demo", "inspect", "verify")
SNIPPET_TIMEOUT_S = 600  # generous: a loaded machine must not turn a slow run into a failure


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # README line of the opening fence
    not_run: str | None  # the reason given in a `<!-- not-run: reason -->` marker, if any


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, with the not-run marker on the line before each (if any)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = re.match(r"^<!--\s*not-run:\s*(.*?)\s*-->$", previous.strip())
        blocks.append(Block(fence.group(1), "\n".join(lines[start + 1 : i]) + "\n", start + 1, marker.group(1) if marker else None))
        i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.language == "python"]


def fastload_commands(block: Block) -> list[list[str]]:
    """The `fastload ...` command lines of a bash block as argv lists (after `fastload`), comments dropped.

    `torchrun ... -m fastload.cli ARGS` counts as `fastload ARGS`; anything else (pip, venv, pytest) is skipped.
    """
    commands = []
    for line in block.code.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words[:1] == ["fastload"]:
                commands.append(words[1:])
            elif "fastload.cli" in words and words[:1] == ["torchrun"]:
                commands.append(words[words.index("fastload.cli") + 1 :])
    return commands


BASH_COMMANDS = [(b, argv) for b in BLOCKS if b.language == "bash" and b.not_run is None for argv in fastload_commands(b)]


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["FASTLOAD_CACHE_DIR"] = str(tmp / "cache")
    return env


class ReadmeSession:
    """A user's working folder; runs the README's snippets there in order, each once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.env = _env(folder.parent)
        self.results: dict[int, subprocess.CompletedProcess] = {}

    def cli(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fastload.cli", *argv], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)

    def python(self, index: int) -> subprocess.CompletedProcess:
        """Run python block `index`, after every earlier runnable block (their files are its starting point)."""
        for earlier in range(index + 1):
            if earlier in self.results or PYTHON[earlier].not_run is not None:
                continue
            script = self.folder / f"readme_snippet_{earlier}.py"
            script.write_text(PYTHON[earlier].code, encoding="utf-8")
            self.results[earlier] = subprocess.run([sys.executable, script.name], cwd=self.folder, env=self.env,
                                                   capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
        return self.results[index]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The folder after the Set up section: the README's own `fastload demo` command has run in it."""
    folder = tmp_path_factory.mktemp("readme") / "work"
    folder.mkdir()
    run = ReadmeSession(folder)
    demo = [argv for _, argv in BASH_COMMANDS if argv[:1] == ["demo"]]
    assert demo, "the README's set-up block no longer converts the demo corpus with `fastload demo`"
    result = run.cli(demo[0])
    assert result.returncode == 0, result.stderr
    return run


def test_the_readme_has_python_snippets_and_marks_the_ones_that_do_not_run():
    assert len(PYTHON) >= 3
    not_run = [b for b in PYTHON if b.not_run is not None]
    assert all(b.not_run for b in not_run), "a not-run marker must give its reason"
    assert len(not_run) == EXPECTED_NOT_RUN, [(b.line, b.not_run) for b in not_run]


def test_a_not_run_marker_is_read_from_the_line_before_its_block_and_bash_lines_become_fastload_commands():
    text = (
        "<!-- not-run: needs 8 GPUs -->\n```python\nlaunch()\n```\n\n```python\nprint(1)\n```\n"
        "```bash\npip install -e . && fastload demo --out demo/corpus  # first\n"
        "torchrun --nproc_per_node 2 -m fastload.cli train demo/corpus\n```\n"
    )
    marked, plain, bash = readme_blocks(text)
    assert (marked.not_run, marked.code, marked.line) == ("needs 8 GPUs", "launch()\n", 2)
    assert plain.not_run is None and plain.code == "print(1)\n"
    assert fastload_commands(bash) == [["demo", "--out", "demo/corpus"], ["train", "demo/corpus"]]


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=[f"README.md:{b.line}" for b in PYTHON])
def test_each_python_snippet_runs_as_written(session, index):
    if PYTHON[index].not_run is not None:  # counted by the test above; nothing to run
        return
    result = session.python(index)
    assert result.returncode == 0, f"README.md:{PYTHON[index].line}: the snippet failed:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("argv", [argv for _, argv in BASH_COMMANDS if argv[0] in CHEAP_COMMANDS],
                         ids=lambda argv: " ".join(argv))
def test_cheap_cli_lines_run_on_the_demo_corpus(session, argv):
    result = session.cli(argv)
    assert result.returncode == 0, f"fastload {' '.join(argv)}:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("argv", [argv for _, argv in BASH_COMMANDS if argv[0] not in CHEAP_COMMANDS],
                         ids=lambda argv: " ".join(argv))
def test_expensive_cli_lines_parse(argv, monkeypatch):
    """The line's subcommand and flags exist: the parser accepts them (the run itself is replaced)."""
    from fastload import cli

    parsed = []
    monkeypatch.setattr(cli, f"_run_{argv[0]}", parsed.append)
    assert cli.main(argv) is None and len(parsed) == 1


# -- what the README says about behaviour is what the code does ------------------------------------------


def _calls(text: str, name: str) -> list[str]:
    """Every `name(...)` call written in `text` (code blocks and prose), with balanced parentheses."""
    found, start = [], text.find(name + "(")
    while start != -1:
        depth, end = 0, start + len(name)
        for end in range(start + len(name), len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        found.append(text[start : end + 1])
        start = text.find(name + "(", end)
    return found


def test_every_cu_seqlens_call_in_the_readme_fits_its_signature():
    import ast
    import inspect

    import fastload

    signature = inspect.signature(fastload.cu_seqlens)
    calls = _calls(README.read_text(encoding="utf-8"), "cu_seqlens")
    assert calls
    for call in calls:
        parsed = ast.parse(call, mode="eval").body
        signature.bind(*parsed.args, **{k.arg: k.value for k in parsed.keywords})  # TypeError if they disagree


def test_cu_seqlens_takes_the_loaders_tensor_and_gives_int32_offsets_on_its_device():
    import torch

    import fastload

    ids = torch.tensor([[0, 0, 1], [0, 1, 1]])  # int64, as document_ids may come
    cu = fastload.cu_seqlens(ids)
    assert isinstance(cu, torch.Tensor) and cu.dtype == torch.int32 and cu.device == ids.device
    assert cu.tolist() == [0, 2, 3, 4, 6]


def test_the_readme_and_convert_help_say_that_tokenizer_drops_the_text_unless_keep_text(tmp_path, capsys):
    import json

    import fastload
    from fastload import cli

    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "the text is dropped unless you add `--keep-text`" in text
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "the text field itself is then dropped unless --keep-text" in shown
    assert "--keep-text with --tokenizer: keep the text field next to the tokens (by default it is dropped)" in shown
    # and that is what happens
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"document {i}", "i": i}) + "\n" for i in range(5)))
    fastload.convert(source, tmp_path / "dropped", tokenizer="bytes", quiet=True)
    fastload.convert(source, tmp_path / "kept", tokenizer="bytes", keep_text=True, quiet=True)
    assert "text" not in fastload.Dataset(tmp_path / "dropped").schema.names
    assert {"text", "tokens"} <= set(fastload.Dataset(tmp_path / "kept").schema.names)


def test_the_readme_and_the_sampler_say_the_last_batch_repeats_rows_and_show_drop_last_for_evaluation():
    import numpy as np

    import fastload

    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "completed with rows repeated from the epoch's start" in text
    assert any("drop_last=True" in b.code and "evaluation" in b.code for b in PYTHON if b.not_run is None)
    doc = " ".join(fastload.Sampler.__doc__.split())
    assert "completed with samples repeated from the start of the epoch" in doc and "drop_last=True" in doc
    # and that is what happens: 375 rows in global batches of 64 (the demo corpus's numbers in the README)
    block_rows = [25] * 15
    padded = [b for rank in (0, 1) for b in fastload.Sampler(block_rows, global_batch_size=64, rank=rank, world_size=2, shuffle=True)]
    assert len(padded) == 12 and {len(b) for b in padded} == {32}
    counts = np.bincount(np.concatenate(padded), minlength=375)
    assert counts.min() == 1 and (counts == 2).sum() == 384 - 375
    dropped = [b for rank in (0, 1) for b in fastload.Sampler(block_rows, global_batch_size=64, rank=rank, world_size=2, shuffle=True, drop_last=True)]
    ids = np.concatenate(dropped)
    assert len(dropped) == 10 and len(ids) == 320 and len(np.unique(ids)) == 320
