"""fastload.train: a small GPT trainer that shows fastload's loader in a real loop, and measures its wait.

    from fastload.train import TrainConfig, train
    result = train("demo/corpus", TrainConfig(model="tiny", steps=200, out="runs/tiny"))

or `fastload train demo/corpus --config tiny`. The parts, one job each:
`model.py` (the GPT), `config.py` (TrainConfig), `optim.py` (AdamW, the
learning-rate schedule), `precision.py` (autocast and the grad scaler),
`data.py` (split, loader, validation batches), `distributed.py` (torchrun),
`checkpoint.py`, `metrics.py`, `plot.py`, `loop.py` (the loop itself) and
`sweep.py` (a hyper-parameter grid).
"""

from fastload.train.config import TrainConfig
from fastload.train.loop import TrainResult, train
from fastload.train.model import GPT, MODEL_CONFIGS, GPTConfig
from fastload.train.sweep import SweepResult, parse_sweep, sweep

__all__ = ["GPT", "GPTConfig", "MODEL_CONFIGS", "SweepResult", "TrainConfig", "TrainResult", "parse_sweep", "sweep", "train"]
