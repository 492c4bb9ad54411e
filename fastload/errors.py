"""The exceptions fastload raises.

One root, `FastloadError`, so callers can catch everything of ours at once;
each subclass also derives from the builtin a caller would already expect
(`FormatError` is a `ValueError`), so existing `except ValueError` keeps
working. Messages say what happened, where, what was expected and how to fix
it; the classes themselves carry no logic.
"""

from __future__ import annotations

__all__ = [
    "FastloadError",
    "FormatError",
    "ConfigError",
    "ConvertError",
    "TokenizerError",
    "StoreError",
]


class FastloadError(Exception):
    """Root of every error fastload raises on purpose."""


class FormatError(FastloadError, ValueError):
    """A dataset folder, index or shard is missing, malformed or corrupt."""


class ConfigError(FastloadError, ValueError):
    """An option or argument has a value fastload cannot work with."""


class ConvertError(FastloadError, ValueError):
    """Input given to `fastload convert` cannot be turned into a dataset."""


class TokenizerError(FastloadError, ValueError):
    """A tokenizer file or vocabulary is unsupported or malformed."""


class StoreError(FastloadError, OSError):
    """Object storage (or a dataset's files) could not be read or written: missing, denied, or failing past every retry."""
