"""Public names imported on first use: how `fastload`, `fastload.train` and `fastload.benchmark` re-export.

    _EXPORTS = {"Dataset": "fastload.format", ...}   # public name -> the module it comes from
    export_on_first_use(__name__, _EXPORTS)            # last line of the package's __init__.py

A package's `__init__.py` lists its names; the first `package.Name` (or
`from package import Name`) imports the module that defines it, and later
look-ups find it directly. So `import fastload` loads no numpy, pyarrow,
Numba or torch, and a module like `fastload.benchmark.proc` can be imported
into another library's benchmark process without pulling those in. The
trade-off: an import error in a submodule shows at first use of its names,
not at `import fastload`; type checkers read the `TYPE_CHECKING` imports each
package keeps beside its table.

One subtlety, handled here once: Python binds a submodule on its parent when
it first loads (`fastload.convert = <module 'fastload.convert'>`). With names
imported on first use, `from fastload.convert import ...` before the first
`fastload.convert(...)` would leave the module where the function belongs;
the package's module type refuses that binding, as eager imports used to
overwrite it.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["export_on_first_use"]


class _PackageWithExports(types.ModuleType):
    """A package whose public names (`_EXPORTS`) are imported on first use and never shadowed by a submodule."""

    def __getattr__(self, name: str):
        module = self.__dict__["_EXPORTS"].get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        self.__dict__[name] = value  # later look-ups find it without coming here
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(self.__dict__["_EXPORTS"]))

    def __setattr__(self, name: str, value: object) -> None:
        if name in self.__dict__["_EXPORTS"] and isinstance(value, types.ModuleType):
            return  # a submodule binding itself over the public name of the same name
        super().__setattr__(name, value)


def export_on_first_use(package: str, exports: dict[str, str]) -> None:
    """Make `exports` (public name -> defining module) the lazily imported names of `package`."""
    module = sys.modules[package]
    differ = set(module.__dict__.get("__all__", ())) ^ set(exports)
    if differ:
        raise ImportError(f"{package}.__all__ and its exports table differ in {sorted(differ)}; list each public name in both")
    module.__dict__["_EXPORTS"] = exports
    module.__class__ = _PackageWithExports
