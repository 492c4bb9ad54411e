"""The house rules that keep the package layered: checked, not hoped for.

This file is the one exact statement of fastload's layout. `PARTS` names
every top-level module of the package with its layer and what it holds;
lower layers never import higher ones (the same layer may import each
other), and parts marked `torch=False` never import torch. The README's
"Layout" table is generated from `PARTS` and `FOLDERS` (`python
tests/test_architecture.py` rewrites it; a test fails when it is stale), and
STYLE.md and DESIGN.md point here instead of restating the layers. Change the
layering here, on purpose, and nowhere else.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastload"
README = ROOT / "README.md"


@dataclass(frozen=True)
class Part:
    name: str  # a top-level module or package of fastload
    layer: int
    what: str  # its row in the README's layout table
    torch: bool = False  # may it import torch?

    @property
    def path(self) -> str:
        is_package = (PACKAGE / self.name).is_dir()
        return f"fastload/{self.name}/" if is_package else f"fastload/{self.name}.py"


PARTS = (
    Part("errors", 0, "`FastloadError` and one subclass per kind of failure"),
    Part("exports", 0, "public names imported on first use, for the packages that re-export (`fastload`, `train`, `benchmark`)"),
    Part("toml_files", 0, "reading the TOML files fastload takes (sweeps, mixtures), with errors that say what to do"),
    Part("environment", 0, "the `FASTLOAD_*` environment variables: the only module that reads them, when called"),
    Part("store", 0, "bytes by name: local folders and object storage (S3, GCS, Azure, HTTP) with retries, the node's block cache and read-ahead"),
    Part("format", 1, "the on-disk format: schema, `index.json`, writer, reader, verify ([SPEC.md](fastload/format/SPEC.md))"),
    Part("sampler", 2, "epoch orders (block window, uniform, sequential), ranks, resumption"),
    Part("kernels", 3, "the Numba flags (`jit.py`), the kernels that write batches (pack, normalize) and the JSON Lines scanner of `convert`, each beside its `*_reference.py` twin"),
    Part("tokenizer", 3, "byte-level BPE: vocabulary files, patterns, batching, and in `tokenizer/kernels/` its Numba kernels with their twins"),
    Part("convert", 4, "`fastload convert`: inputs → partitions → chunks → threads → writers → one index"),
    Part("ray", 4, "fastload on Ray: the Ray engine of `fastload convert`; the only module that imports Ray"),
    Part("packing", 4, "`PackedDataset`, `PaddedDataset`: the packing plan and the batches workers compute"),
    Part("arrays", 4, "`ArrayDataset` and its transforms (`NormalizeImage`, `Standardize`)"),
    Part("demo", 4, "the shipped demo corpus"),
    Part("pool", 5, "shared-memory slots, leased with each batch and returned when its tensors die", torch=True),
    Part("workers", 5, "the worker processes (protocol NOTE in `workers/protocol.py`)", torch=True),
    Part("torch_private", 5, "every private torch name and attribute `loader` and `workers` use, each with what for (checked against the installed torch by `tests/loader/test_torch_private.py`)", torch=True),
    Part("loader", 6, "`fastload.DataLoader`", torch=True),
    Part("attention", 6, "`fastload.cu_seqlens`: packed batches' document ids as variable-length attention offsets", torch=True),
    Part("train", 7, "a small GPT trainer (model, loop, checkpoints, DDP, sweep)", torch=True),
    Part("benchmark", 7, "`fastload bench`: fastload vs a naive loader on the user's dataset", torch=True),
    Part("cli", 7, "the `fastload` command", torch=True),
    Part("__init__", 7, "the public API: lazy re-exports and `__all__`", torch=True),
)
LAYERS = {part.name: part.layer for part in PARTS}

# The repository's other folders, for the README's table.
FOLDERS = (
    ("native/", "where C pieces go once a benchmark justifies one; none has so far (its README records what was measured)"),
    ("bench/", "benchmarks against the peers, one suite (`bench/run_all.py`); each prints a table"),
    ("docs/", "a complete training loop fed by fastload"),
    ("tests/", "mirrors the package; hostile inputs in `tests/format/attacks/`"),
)

# Modules in a kernels folder without a `<name>_reference.py` twin: building blocks that
# other kernels use and whose tests go through those kernels (or that compute nothing).
KERNEL_BUILDING_BLOCKS = {
    "fastload/kernels/jit.py": "the Numba flags",
    "fastload/kernels/pointers.py": "addresses to arrays; exercised by every fill kernel",
    "fastload/kernels/words.py": "unaligned 8-byte loads and stores; exercised by the JSON Lines scanner",
    "fastload/tokenizer/kernels/hashtable.py": "the tables bpe.py looks up; its twin is the dict in bpe_reference.py",
    "fastload/tokenizer/kernels/pattern_ids.py": "constants",
    "fastload/tokenizer/kernels/unicode_table.py": "loads the shipped table; tested against unicodedata",
}

LAYOUT_BEGIN = "<!-- layout: generated from tests/test_architecture.py; `python tests/test_architecture.py` rewrites it -->"
LAYOUT_END = "<!-- end of layout -->"


# -- reading the package ----------------------------------------------------------


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "assets" in path.parts:  # offline build scripts, not part of the library
            continue
        yield path, path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _package_of(path: Path) -> list[str]:
    """The dotted package `path` belongs to, as parts: fastload/a/b.py -> [fastload, a]; fastload/a/__init__.py -> [fastload, a]."""
    return ["fastload", *path.relative_to(PACKAGE).parent.parts]


def _imports(path: Path, source: str | None = None):
    """Every module `path` (or `source`, read as if at `path`) imports, absolute, relative ones resolved."""
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path)[: len(_package_of(path)) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            # `from fastload import format` imports fastload.format; `from fastload import Dataset`
            # goes through fastload/__init__.py, the top layer.
            for alias in node.names:
                yield f"{module}.{alias.name}" if module == "fastload" else module


def _target_part(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "fastload":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1] if parts[1] in LAYERS else "__init__"  # a name re-exported by fastload/__init__.py


def _kernels(path: Path) -> list[str]:
    """Names of the functions in `path` decorated with fastload's `kernel` (or numba's `intrinsic`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name) and target.id in ("kernel", "intrinsic"):
                    found.append(node.name)
    return found


def layout_table() -> str:
    rows = ["| layer | path | what |", "| --- | --- | --- |"]
    rows += [f"| {p.layer} | `{p.path}` | {p.what} |" for p in sorted(PARTS, key=lambda p: p.layer)]
    rows += [f"| | `{folder}` | {what} |" for folder, what in FOLDERS]
    return "\n".join(rows)


def _readme_layout(text: str) -> str | None:
    match = re.search(re.escape(LAYOUT_BEGIN) + r"\n(.*?)" + re.escape(LAYOUT_END), text, re.S)
    return match.group(1).rstrip("\n") if match else None


# -- the rules --------------------------------------------------------------------


def test_every_top_level_module_has_a_layer_and_every_part_exists():
    found = {top for _, top in _modules()}
    assert not found - set(LAYERS), f"add {found - set(LAYERS)} to PARTS in this test"
    assert not set(LAYERS) - found, f"PARTS names modules that do not exist: {set(LAYERS) - found}"


def test_imports_point_one_way_down_the_layers():
    violations = []
    for path, top in _modules():
        for name in _imports(path):
            target = _target_part(name)
            if target is not None and LAYERS[target] > LAYERS[top]:
                violations.append(f"{path.relative_to(PACKAGE)} (layer {LAYERS[top]}) imports {name} (layer {LAYERS[target]})")
    assert not violations, "\n".join(violations)


def test_the_import_reader_sees_relative_imports_and_names_imported_from_the_package():
    source = "from . import reader\nfrom ..loader import DataLoader\nfrom fastload import Dataset, pool\nimport fastload.sampler\n"
    names = list(_imports(PACKAGE / "format" / "example.py", source))
    assert names == ["fastload.format", "fastload.loader", "fastload.Dataset", "fastload.pool", "fastload.sampler"]
    assert [_target_part(n) for n in names] == ["format", "loader", "__init__", "pool", "sampler"]


def test_parts_without_torch_never_import_it():
    no_torch = {p.name for p in PARTS if not p.torch}
    offenders = [
        str(path.relative_to(PACKAGE))
        for path, top in _modules()
        if top in no_torch and any(n.split(".")[0] == "torch" for n in _imports(path))
    ]
    assert not offenders


def test_importing_fastload_starts_no_threads_and_compiles_nothing():
    code = (
        "import sys, threading, fastload\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "heavy = [m for m in ('torch', 'numba', 'tqdm', 'pyarrow', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_print_calls_outside_the_cli():
    offenders = []
    for path, top in _modules():
        if top == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders


def test_numba_kernels_live_in_kernels_folders_each_beside_its_twin():
    misplaced, missing = [], []
    for path, _ in _modules():
        relative = path.relative_to(ROOT).as_posix()
        in_kernels = path.parent.name == "kernels"
        if not in_kernels:
            if _kernels(path):
                misplaced.append(f"{relative}: {_kernels(path)}")
            continue
        if path.name == "__init__.py" or path.stem.endswith("_reference") or relative in KERNEL_BUILDING_BLOCKS:
            continue
        if not path.with_name(f"{path.stem}_reference.py").exists():
            missing.append(relative)
    assert not misplaced, f"Numba kernels outside a kernels/ folder: {misplaced}"
    assert not missing, f"kernel modules without a <name>_reference.py twin beside them: {missing}"
    for twin in PACKAGE.rglob("*_reference.py"):
        assert twin.with_name(twin.name.replace("_reference", "")).exists(), f"{twin} has no kernel beside it"
    for building_block in KERNEL_BUILDING_BLOCKS:
        assert (ROOT / building_block).exists(), f"KERNEL_BUILDING_BLOCKS names {building_block}, which does not exist"


def test_twins_are_never_used_at_run_time():
    offenders = []
    for path, _ in _modules():
        if path.stem.endswith("_reference"):
            continue  # one twin may build on another (bpe_reference pre-tokenizes with pretokenize_reference)
        offenders += [f"{path.relative_to(PACKAGE)} imports {n}" for n in _imports(path) if n.split(".")[-1].endswith("_reference")]
    assert not offenders, offenders


def test_the_readme_layout_table_is_generated_from_this_file():
    found = _readme_layout(README.read_text())
    assert found is not None, f"README.md lacks the layout markers {LAYOUT_BEGIN!r} ... {LAYOUT_END!r}"
    assert found == layout_table(), "README.md's layout table is stale: run `python tests/test_architecture.py`"
    for folder, _ in FOLDERS:
        assert (ROOT / folder).is_dir(), f"FOLDERS names {folder}, which does not exist"


def _rewrite_readme() -> None:
    text = README.read_text()
    if _readme_layout(text) is None:
        raise SystemExit(f"README.md lacks the markers {LAYOUT_BEGIN!r} and {LAYOUT_END!r}; add them where the table goes")
    start = text.index(LAYOUT_BEGIN) + len(LAYOUT_BEGIN)
    end = text.index(LAYOUT_END)
    README.write_text(text[:start] + "\n" + layout_table() + "\n" + text[end:])


if __name__ == "__main__":
    _rewrite_readme()
