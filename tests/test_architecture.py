"""The house rules that keep the package layered (see shared STYLE.md): checked, not hoped for."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastload"

# Lower layers never import higher ones. Same layer may import each other.
LAYERS = {
    "errors": 0,
    "options": 0,
    "format": 1,
    "sampler": 2,
    "kernels": 3,
    "tokenizer": 3,
    "convert": 4,
    "packing": 4,
    "arrays": 4,
    "demo": 4,
    "pool": 5,
    "workers": 5,
    "loader": 6,
    "train": 7,
    "benchmark": 7,
    "cli": 7,
    "__init__": 7,
}
NO_TORCH = ("format", "sampler", "kernels", "tokenizer", "convert", "packing", "arrays")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "assets" in path.parts:  # offline build scripts, not part of the library
            continue
        yield path, path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_every_top_level_module_has_a_layer():
    missing = {top for _, top in _modules()} - set(LAYERS)
    assert not missing, f"add {missing} to LAYERS in this test (and to the layering in STYLE.md)"


def test_imports_point_one_way_down_the_layers():
    violations = []
    for path, top in _modules():
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "fastload" or len(parts) < 2:
                continue
            if LAYERS[parts[1]] > LAYERS[top]:
                violations.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not violations, "\n".join(violations)


def test_format_sampler_kernels_and_tokenizer_never_import_torch():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path, top in _modules()
        if top in NO_TORCH and any(n.split(".")[0] == "torch" for n in _imports(path))
    ]
    assert not offenders


def test_importing_fastload_starts_no_threads_and_compiles_nothing():
    code = (
        "import sys, threading, fastload\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "heavy = [m for m in ('torch', 'numba', 'tqdm') if m in sys.modules]\n"
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
