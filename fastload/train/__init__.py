"""fastload.train: a small GPT trainer that shows fastload's loader in a real loop, and measures its wait.

    from fastload.train import TrainConfig, train
    result = train("demo/corpus", TrainConfig(model="tiny", steps=200, out="runs/tiny"))

or `fastload train demo/corpus --config tiny`. The parts, one job each:
`model.py` (the GPT), `config.py` (TrainConfig), `flags.py` (`fastload
train`'s flags, read from config.py's source), `optim.py` (AdamW, the
learning-rate schedule), `precision.py` (autocast and the grad scaler),
`data.py` (split, loader, validation batches), `distributed.py` (torchrun),
`checkpoint.py`, `metrics.py`, `progress.py` (the lines a run logs), `plot.py`,
`loop.py` (the loop itself) and `sweep.py` (a hyper-parameter grid).

The public names are imported from their modules on first use (PEP 562, the
table `_EXPORTS`), the way `fastload/__init__.py` does it: importing
`fastload.train.flags` to build the CLI parser imports this package, and
must not import torch with it. A module here imports torch only if it needs
it itself. The trade-off: an import error in loop.py or model.py shows at
first use of their names, not at `import fastload.train`. Type checkers and
IDEs read the `TYPE_CHECKING` imports below, which list the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastload.exports import export_on_first_use

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

export_on_first_use(__name__, _EXPORTS)
