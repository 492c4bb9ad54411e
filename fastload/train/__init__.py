"""fastload.train: a small GPT trainer that shows fastload's loader in a real loop, and measures its wait.

    from fastload.train import TrainConfig, train
    result = train("demo/corpus", TrainConfig(model="tiny", steps=200, out="runs/tiny"))

or `fastload train demo/corpus --config tiny`. The parts, one job each:
`model.py` (the GPT), `config.py` (TrainConfig), `flags.py` (`fastload
train`'s flags, read from config.py's source), `optim.py` (AdamW, the
learning-rate schedule), `precision.py` (autocast and the grad scaler),
`data.py` (split, loader, validation batches), `distributed.py` (torchrun),
`checkpoint.py`, `metrics.py`, `plot.py`, `loop.py` (the loop itself) and
`sweep.py` (a hyper-parameter grid).

The public names are imported from their modules on first use (PEP 562, the
table `_EXPORTS`), the way `fastload/__init__.py` does it: importing
`fastload.train.flags` to build the CLI parser imports this package, and
must not import torch with it. A module here imports torch only if it needs
it itself. The trade-off: an import error in loop.py or model.py shows at
first use of their names, not at `import fastload.train`. Type checkers and
IDEs read the `TYPE_CHECKING` imports below, which list the same names.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastload.train.config import TrainConfig
    from fastload.train.loop import TrainResult, train
    from fastload.train.model import GPT, MODEL_CONFIGS, GPTConfig
    from fastload.train.sweep import SweepResult, parse_sweep, sweep

# public name -> the module it comes from (imported on first use; every one imports torch)
_EXPORTS = {
    "TrainConfig": "fastload.train.config",
    "TrainResult": "fastload.train.loop",
    "train": "fastload.train.loop",
    "GPT": "fastload.train.model",
    "GPTConfig": "fastload.train.model",
    "MODEL_CONFIGS": "fastload.train.model",
    "SweepResult": "fastload.train.sweep",
    "parse_sweep": "fastload.train.sweep",
    "sweep": "fastload.train.sweep",
}

__all__ = ["GPT", "GPTConfig", "MODEL_CONFIGS", "SweepResult", "TrainConfig", "TrainResult", "parse_sweep", "sweep", "train"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastload.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """`fastload.train`'s module type: the function `fastload.train.sweep` is never replaced by the module of that name.

    Python binds a submodule on its parent when it first loads
    (`fastload.train.sweep = <module 'fastload.train.sweep'>`). With the
    names imported on first use, `from fastload.train.sweep import ...`
    before the first `from fastload.train import sweep` would hand out the
    module; this keeps the binding out, as the eager imports used to, and
    `__getattr__` above finds the function. (fastload/__init__.py does the
    same for `fastload.convert`.)
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
