"""`TrainConfig`: every setting of a training run, in one frozen dataclass that checks itself.

The CLI flags are the kebab-case form of the fields (`--batch-size` ↔
`batch_size`; `model` is `--config`), a sweep replaces fields by name (`lr=3e-4,1e-3`), and a
checkpoint records the config as a plain dict. What is not here: the model's
shape, which is a `GPTConfig` (named by `model`), and the dataset, which is
an argument of `train()`.

Defaults are sized for the `tiny` model on a laptop CPU and the demo corpus;
the comments say where the others come from.

This class is also the one list of `fastload train`'s flags, read from this
file's source (the NOTE in fastload/train/flags.py says why): a field's type, its
default, the fixed set its `__post_init__` check names (`not in PRECISIONS`)
and the comment beside it, which is the flag's `--help` text. So each field
keeps a literal default and a one-line comment that reads well in both places
("None: ..." there says what leaving the flag out means).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from fastload.errors import ConfigError
from fastload.train.model import MODEL_CONFIGS, GPTConfig

__all__ = ["TrainConfig", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: schedule, batch, optimizer, precision, evaluation and where to write."""

    model: str | GPTConfig = "tiny"  # a MODEL_CONFIGS name: tiny (2 layers x 128, seq 128, for a CPU), mini, gpt2-small, gpt2-medium; in Python also a GPTConfig
    steps: int = 200  # optimizer steps in all (a resumed run continues up to this many)
    batch_size: int = 8  # rows per micro-batch, per rank (the tiny model takes ~1 s a step on 2 CPU cores)
    grad_accum: int = 1  # micro-batches per optimizer step
    seq_len: int | None = None  # tokens per row; None: the model's block_size
    lr: float = 1e-3  # peak learning rate; nanoGPT uses 1e-3 for its small char model, 6e-4 for GPT-2 small
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio (Chinchilla: 10x decay)
    warmup_steps: int = 20  # steps of linear warm-up from 0
    decay_steps: int | None = None  # length of the cosine; None: `steps` (set it to resume into a longer run)
    weight_decay: float = 0.1  # AdamW weight decay, on matrices only (GPT-3 paper)
    beta1: float = 0.9  # AdamW's first-moment decay (GPT-3 paper)
    beta2: float = 0.95  # AdamW's second-moment decay (GPT-3 paper)
    grad_clip: float | None = 1.0  # max global gradient norm; None (0 on the command line): no clipping
    precision: str = "auto"  # auto: bf16 autocast where supported, fp16 + GradScaler on older GPUs, fp32 on CPU
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # "auto": cuda (the local rank's) if available, else cpu; or "cpu", "cuda", "cuda:N"
    workers: int = 2  # fastload.DataLoader worker processes
    cache_dir: str | None = None  # for a dataset in object storage (s3://...): the node's block cache folder; None: blocks/ in FASTLOAD_CACHE_DIR or ~/.cache/fastload
    cache_bytes: int | None = None  # for a dataset in object storage: the block cache's size in bytes; None: half the free space of its disk
    tokenizer: str | None = None  # for a dataset with only text: "default" or a tokenizer.json path (tokenized on the fly)
    seed: int = 0  # model init, data order and validation split
    validation: float = 0.05  # fraction of the dataset's blocks held out (at least one block); 0: none
    eval_every: int = 50  # steps between evaluations (and one at the end)
    eval_batches: int = 8  # validation batches per evaluation (the same ones every time)
    patience: int | None = None  # stop after this many evaluations without improvement; None: never
    min_delta: float = 0.0  # an improvement must lower the validation loss by more than this
    log_every: int = 10  # steps between metrics records
    checkpoint_every: int | None = None  # steps between checkpoints; None: at every evaluation and at the end
    out: str | None = "runs/train"  # folder for metrics.jsonl, checkpoint.pt and metrics.png; None (in Python): write nothing
    resume: bool = False  # continue from out/checkpoint.pt with exactly the next batch
    plot: bool = True  # write metrics.png at the end (needs matplotlib)
    deterministic: bool = False  # torch.use_deterministic_algorithms(True) (bit-identical reruns on GPU too, slower)

    def __post_init__(self) -> None:
        if isinstance(self.model, str) and self.model not in MODEL_CONFIGS:
            raise ConfigError(f"unknown model config {self.model!r}; valid names: {', '.join(MODEL_CONFIGS)}")
        if not isinstance(self.model, (str, GPTConfig)):
            raise ConfigError(f"model must be a config name or a GPTConfig, found {type(self.model).__name__}")
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_batches", "log_every"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "workers", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("seq_len", "decay_steps", "patience", "checkpoint_every", "cache_bytes"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if not (isinstance(self.lr, (int, float)) and self.lr >= 0):
            raise ConfigError(f"lr must be a non-negative number, found {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], found {self.min_lr_ratio!r}")
        if not 0 <= self.validation < 1:
            raise ConfigError(f"validation must be a fraction of the blocks in [0, 1), found {self.validation!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive (or None for no clipping), found {self.grad_clip!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, found {self.precision!r}")
        if self.patience is not None and not self.validation:
            raise ConfigError("early stopping (patience) needs a validation split: set validation > 0")
        if self.resume and self.out is None:
            raise ConfigError("resume needs an `out` folder holding checkpoint.pt")
        model = self.model_config()
        if self.seq_len is not None and model.block_size < self.seq_len:
            raise ConfigError(f"seq_len {self.seq_len} exceeds the model's block_size {model.block_size}; pick a smaller seq_len or a larger model")

    def model_config(self) -> GPTConfig:
        return GPTConfig.named(self.model) if isinstance(self.model, str) else self.model

    @property
    def rows_seq_len(self) -> int:
        """Tokens of input per row: `seq_len`, or the model's block_size."""
        return self.seq_len if self.seq_len is not None else self.model_config().block_size

    def replace(self, **changes) -> "TrainConfig":
        """A copy with `changes` (field names) applied and checked; unknown names are a ConfigError."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown training setting(s) {sorted(unknown)}; valid names: {', '.join(f.name for f in fields(self))}")
        return replace(self, **changes)

    def to_json(self) -> dict:
        out = asdict(self)
        out["model"] = self.model if isinstance(self.model, str) else self.model.to_json()
        return out


def _check_int(name: str, value, *, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, found {value!r}")
