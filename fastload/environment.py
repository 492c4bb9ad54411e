"""Process-wide settings read from `FASTLOAD_*` environment variables.

This is the only module that reads the environment, and it reads it when a
function here is called, never at import time, so importing fastload has no
side effects and tests can change a variable between calls.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["jit_disabled", "env_flag", "cache_dir", "flat_json_disabled"]


def env_flag(name: str, default: bool = False) -> bool:
    """True when the variable `name` is set to 1/true/yes/on (any case)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def jit_disabled() -> bool:
    """`FASTLOAD_DISABLE_JIT=1` runs every kernel as plain Python (debugging)."""
    return env_flag("FASTLOAD_DISABLE_JIT")


def flat_json_disabled() -> bool:
    """`FASTLOAD_DISABLE_FLAT_JSON=1` reads every JSON Lines chunk with pyarrow's reader, never the Numba scanner
    (`convert/flat_json.py`); the output is the same either way, so this is for comparing the two paths. With
    `FASTLOAD_DISABLE_JIT=1` the scanner is off too: as plain Python it would be a hundred times slower than pyarrow."""
    return env_flag("FASTLOAD_DISABLE_FLAT_JSON") or jit_disabled()


def cache_dir() -> Path | None:
    """Where fastload may keep derived data (document token counts): `FASTLOAD_CACHE_DIR`, else
    `$XDG_CACHE_HOME/fastload` or `~/.cache/fastload`. `FASTLOAD_CACHE_DIR=off` disables it (None)."""
    explicit = os.environ.get("FASTLOAD_CACHE_DIR", "").strip()
    if explicit.lower() in {"off", "none", "0", "false"}:
        return None
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "fastload"
