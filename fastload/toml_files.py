"""Reading the TOML files fastload takes (sweeps, mixtures): one place for the errors a user sees."""

from __future__ import annotations

import os

from fastload.errors import ConfigError

__all__ = ["read_toml"]


def read_toml(path: str | os.PathLike, what: str, *, instead: str) -> dict:
    """The parsed file; a ConfigError naming `what` it is ("sweep file") when it cannot be read.
    `instead`: what to do on Python 3.10, which has no tomllib."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ConfigError(f"{what}s in TOML need Python 3.11 or newer (tomllib); {instead}") from None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read the {what} {str(path)!r}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {error}") from None
