"""The training loop: `train(dataset, config)` trains a GPT on a fastload dataset and returns a `TrainResult`.

    result = train("demo/corpus", TrainConfig(model="tiny", steps=200, out="runs/tiny"))
    result.best_val_loss, result.steps, result.stopped_early

One optimizer step is `grad_accum` micro-batches: each is taken from the
loader (the time inside `next()` is the step's data wait), copied to the
device (non-blocking from the pinned pool), run forward under autocast and
backward through the gradient scaler (under DDP, gradients are all-reduced
on the last micro-batch only); then gradients are unscaled and clipped, and
AdamW steps with the learning rate of that step (`optim.lr_at`).

Every `eval_every` steps, and at the end, the fixed validation batches are
scored (loss and perplexity, averaged over ranks); with `patience`, the run
stops after that many evaluations without an improvement. Checkpoints (see
`checkpoint.py`) hold everything to continue with exactly the next batch:
with `resume=True` a run picks up from `out/checkpoint.pt`, and N steps, a
stop, and M more give the same batches and (on CPU) the same losses as N+M
steps in one go.

What this loop leaves out on purpose: multiple datasets or mixtures,
FSDP/tensor parallelism, and generation. It exists to show fastload's
loader in a real loop and to measure how long that loop waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from fastload.errors import ConfigError
from fastload.format.reader import Dataset
from fastload.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from fastload.train.config import TrainConfig
from fastload.train.data import open_data, to_device, vocab_size_of
from fastload.train.distributed import Distributed, setup_distributed
from fastload.train.metrics import MetricsLog, StepMeter, read_metrics
from fastload.train.model import GPT
from fastload.train.optim import lr_at, make_optimizer
from fastload.train.plot import plot_metrics
from fastload.train.precision import resolve_precision
from fastload.train.progress import write_progress

__all__ = ["train", "TrainResult"]

logger = logging.getLogger("fastload.train")

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "metrics.png"


@dataclass
class TrainResult:
    steps: int  # optimizer steps done, counting those before a resume
    best_val_loss: float | None
    final_val_loss: float | None
    stopped_early: bool
    out: Path | None
    records: list[dict] = field(default_factory=list)  # this run's metrics (rank 0's)
    model: torch.nn.Module | None = None  # the trained GPT (not compiled, not wrapped in DDP)
    rank: int = 0  # this process's rank (records are kept on rank 0 only)


def train(
    dataset: Dataset | str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    on_record: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, dict], None] | None = None,
    loader=None,
    quiet: bool = False,
) -> TrainResult:
    """Train a GPT on `dataset` as `config` says.

    Progress goes to stderr as it happens, one line per metrics record (the
    lines `fastload train` prints: the model, then loss, tokens/s and data
    wait every `log_every` steps, each evaluation, the end); quiet=True: none.
    on_record(record): called on rank 0 with every metrics record, instead of writing its line
        (the CLI prints them; `fastload.train.progress.format_record` gives the line).
    on_batch(step, batch): called on every rank with each micro-batch as the loader gave it.
    loader: train on these batches instead of fastload's (any iterable of dicts of (B, T) tensors:
        input_ids, labels, position_ids, document_ids), to compare loaders in the same loop
        (bench/train.py); validation still comes from `dataset`, and a checkpoint can resume the
        data position only if the loader has state_dict() / load_state_dict().
    Under torchrun the process group is started here (nccl on CUDA, gloo on CPU) and ended at the end.
    """
    dist = setup_distributed(config.device)
    try:
        if on_record is None and not quiet:
            on_record = write_progress
        return _Run(dataset, config, dist, on_record=on_record, on_batch=on_batch, loader=loader).run()
    finally:
        dist.close()


class _Run:
    """One training run's state; `run()` drives it."""

    def __init__(self, dataset, config: TrainConfig, dist: Distributed, *, on_record, on_batch, loader):
        self.config, self.dist, self.on_record, self.on_batch = config, dist, on_record, on_batch
        self.device = dist.device
        if config.deterministic:
            if self.device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for deterministic matmuls
            torch.use_deterministic_algorithms(True)
        self.precision = resolve_precision(config.precision, self.device.type, bf16_supported=self.device.type == "cuda" and torch.cuda.is_bf16_supported())
        self.out = Path(config.out) if config.out is not None else None
        self.data = open_data(dataset, config, device=self.device, loader=loader)
        self.model_config = replace(config.model_config(), vocab_size=vocab_size_of(self.data.dataset, config))
        torch.manual_seed(config.seed)  # the same initial weights on every rank, with or without a validation split
        self.model = GPT(self.model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, config, fused=self.device.type == "cuda")
        self.scaler = self.precision.make_scaler()
        self.net = torch.compile(self.model) if config.compile else self.model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        torch.manual_seed(config.seed + 1 + dist.rank)  # dropout: different on each rank
        self.step = 0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.evals_since_best = 0
        if config.resume:
            self._resume()
        self.log = MetricsLog(self._metrics_path() if dist.is_main else None, append=config.resume)
        self.meter = StepMeter()
        self.batches = _endless(self.data.loader)

    # -- the run -------------------------------------------------------------------

    def run(self) -> TrainResult:
        config = self.config
        self._announce()
        stopped_early = False
        loss_sum = torch.zeros((), device=self.device)
        try:
            stopped_early = self._steps(loss_sum)
        except _DataEnded as ended:  # a mixture with a source set to "stop" was read whole
            self._save()
            self._end_reason, stopped_early = str(ended), True
        finally:
            self.batches.close()  # ends the loader's iterator, and with it the workers
        return self._finish(stopped_early)

    def _steps(self, loss_sum: torch.Tensor) -> bool:
        """Train to the configured step (or an early stop); whether it stopped early."""
        config, stopped_early = self.config, False
        while self.step < config.steps and not stopped_early:
            log_now = (self.step + 1) % config.log_every == 0 or self.step + 1 == config.steps
            loss_sum += self._train_step(sync=log_now)
            self.step += 1
            if log_now:
                loss = self.dist.mean(loss_sum).item() / self.meter.steps  # mean over the interval and the ranks
                self._record({"kind": "train", "step": self.step, "loss": loss, "lr": lr_at(self.step - 1, config), **self.meter.summary(), **self._source_counts()})
                loss_sum.zero_()
            evaluate = bool(self.data.validation) and (self.step % config.eval_every == 0 or self.step == config.steps)
            if evaluate:
                stopped_early = self._evaluate()
            every = config.checkpoint_every
            if (every is not None and self.step % every == 0) or (every is None and evaluate) or self.step == config.steps or stopped_early:
                self._save()
        return stopped_early

    def _train_step(self, *, sync: bool) -> torch.Tensor:
        """One optimizer step over grad_accum micro-batches; the mean micro-batch loss (a device tensor)."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, config)
        started = time.perf_counter()
        data_wait_s = 0.0
        loss_total = torch.zeros((), device=self.device)
        tokens = 0
        for micro in range(config.grad_accum):
            waited = time.perf_counter()
            batch = next(self.batches)
            data_wait_s += time.perf_counter() - waited
            if self.on_batch is not None:
                self.on_batch(self.step, batch)
            tokens += batch["input_ids"].numel() * self.dist.world_size
            batch = to_device(batch, self.device)
            last = micro == config.grad_accum - 1
            sync_grads = contextlib.nullcontext() if last or not self.dist.enabled else self.net.no_sync()
            with sync_grads:
                with self.precision.autocast():
                    loss = self._loss(self.net, batch)
                self.scaler.scale(loss / config.grad_accum).backward()
            loss_total += loss.detach()
        if config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if sync and self.device.type == "cuda":  # the interval's wall time is exact only once the GPU has caught up
            torch.cuda.synchronize(self.device)
        self.meter.add(step_s=time.perf_counter() - started, data_wait_s=data_wait_s, tokens=tokens)
        return loss_total / config.grad_accum

    @staticmethod
    def _loss(net, batch: dict) -> torch.Tensor:
        logits = net(batch["input_ids"], position_ids=batch["position_ids"], document_ids=batch["document_ids"])  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)  # padding labels are -100

    # -- evaluation and early stopping -------------------------------------------------

    def _evaluate(self) -> bool:
        """Score the validation batches; True when early stopping says stop."""
        config = self.config
        self.model.eval()
        total = torch.zeros(2, device=self.device, dtype=torch.float64)  # (sum of token losses, tokens)
        with torch.no_grad():
            for batch in self.data.validation:
                with self.precision.autocast():
                    logits = self.model(batch["input_ids"], position_ids=batch["position_ids"], document_ids=batch["document_ids"])
                labels = batch["labels"].flatten()
                total[0] += F.cross_entropy(logits.float().flatten(0, 1), labels, ignore_index=-100, reduction="sum")
                total[1] += (labels != -100).sum()
        self.model.train()
        total = self.dist.mean(total)
        val_loss = (total[0] / total[1]).item()
        self.last_val_loss = val_loss
        # Only evaluations on the eval_every grid count for early stopping: the extra one at the end of a
        # run that is later resumed must not change what the resumed run decides.
        if self.step % config.eval_every == 0:
            if self.best_val_loss is None or val_loss < self.best_val_loss - config.min_delta:
                self.best_val_loss, self.evals_since_best = val_loss, 0
            else:
                self.evals_since_best += 1
        stop = config.patience is not None and self.evals_since_best >= config.patience
        self._record({
            "kind": "eval", "step": self.step, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 700.0)),
            "best_val_loss": self.best_val_loss, "evals_since_best": self.evals_since_best, "early_stop": stop,
        })
        return stop

    # -- checkpoints -------------------------------------------------------------------

    def _save(self) -> None:
        rng = self.dist.gather_objects(capture_rng())  # a collective: every rank takes part
        if self.out is None or not self.dist.is_main:
            return
        save_checkpoint(self.out / CHECKPOINT_NAME, {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "loader": self.data.loader.state_dict() if hasattr(self.data.loader, "state_dict") else None,
            "best_val_loss": self.best_val_loss,
            "last_val_loss": self.last_val_loss,
            "evals_since_best": self.evals_since_best,
            "model_config": self.model_config.to_json(),
            "train_config": self.config.to_json(),
            "world_size": self.dist.world_size,
        })

    def _resume(self) -> None:
        saved = load_checkpoint(self.out / CHECKPOINT_NAME)
        if saved["model_config"] != self.model_config.to_json():
            raise ConfigError(
                f"cannot resume: the checkpoint's model {saved['model_config']} differs from this run's {self.model_config.to_json()}; "
                "resume with the same --config (model)"
            )
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        if saved["loader"] is None or not hasattr(self.data.loader, "load_state_dict"):
            raise ConfigError("cannot resume the data position: the checkpoint's loader or this run's has no state_dict(); train with fastload's loader to resume")
        self.data.loader.load_state_dict(saved["loader"])
        self.step = saved["step"]
        self.best_val_loss, self.last_val_loss = saved["best_val_loss"], saved["last_val_loss"]
        self.evals_since_best = saved["evals_since_best"]
        if len(saved["rng"]) == self.dist.world_size:
            restore_rng(saved["rng"][self.dist.rank])
        else:  # another world size: the data resumes exactly, dropout gets fresh seeds
            torch.manual_seed(self.config.seed + 1 + self.dist.rank + self.step * self.dist.world_size)
        if self.dist.is_main:
            _drop_records_after(self._metrics_path(), self.step)
        logger.info("resumed from %s at step %d", self.out / CHECKPOINT_NAME, self.step)

    def _source_counts(self) -> dict:
        return _mixture_counts(self.data.loader) if self.data.mixture is not None else {}

    # -- records -----------------------------------------------------------------------

    def _metrics_path(self) -> Path | None:
        return None if self.out is None else self.out / METRICS_NAME

    def _record(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        self.log.write(record)
        if self.on_record is not None:
            self.on_record(record)

    def _announce(self) -> None:
        c, m = self.config, self.model_config
        self._record({
            "kind": "start", "step": self.step, "model": m.to_json(), "parameters": self.model.num_parameters(),
            "device": str(self.device), "precision": self.precision.name, "world_size": self.dist.world_size,
            "tokens_per_step": c.batch_size * c.grad_accum * c.rows_seq_len * self.dist.world_size,
            "train_blocks": self.data.train_blocks, "validation_blocks": self.data.validation_blocks,
            "resumed": c.resume, "workers": c.workers,
            **({"mixture": self.data.mixture.fingerprint()} if self.data.mixture is not None else {}),
        })

    def _finish(self, stopped_early: bool) -> TrainResult:
        best = min((v for v in (self.best_val_loss, self.last_val_loss) if v is not None), default=None)
        self._record({"kind": "end", "step": self.step, "best_val_loss": best, "final_val_loss": self.last_val_loss, "stopped_early": stopped_early,
                      **({"reason": self._end_reason} if getattr(self, "_end_reason", None) else {})})
        self.log.close()
        if self.dist.is_main and self.out is not None and self.config.plot:
            records = read_metrics(self._metrics_path())
            plot_metrics(records, self.out / PLOT_NAME, title=f"GPT {self.model_config.n_layer} x {self.model_config.n_embd}, {self.dist.world_size} rank(s)")
        self.dist.barrier()
        return TrainResult(self.step, best, self.last_val_loss, stopped_early, self.out, list(self.log.records), self.model, self.dist.rank)


def _mixture_counts(loader) -> dict:
    """What each source of a mixture has delivered to the whole job so far (rows, tokens, passes), from the loader's sampler."""
    sampler = getattr(loader, "sampler", None)
    if not hasattr(sampler, "consumed") or not hasattr(loader, "state_dict"):
        return {}
    return {"sources": sampler.consumed(batches_done=loader.state_dict()["batches_yielded"])}


class _DataEnded(Exception):
    """The training data has an end (a mixture's source set to on_exhausted="stop"), and it was reached."""


def _endless(loader):
    """The loader's batches, epoch after epoch (each `for` over the loader starts the next epoch)."""
    while True:
        delivered = False
        for batch in loader:
            delivered = True
            yield batch
        end = getattr(getattr(getattr(loader, "sampler", None), "plan", None), "num_batches", None)
        if not delivered and end is not None:
            raise _DataEnded(f"the mixture ended after {end:,} global batches: a source set to on_exhausted='stop' was read whole")
        if not delivered:
            raise ConfigError("the training split gives no batch at all; use a larger dataset, a smaller batch_size or seq_len")


def _drop_records_after(path: Path | None, step: int) -> None:
    """A resumed run rewrites the records of the steps it is about to redo."""
    if path is None or not path.exists():
        return
    import json

    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step and r.get("kind") != "end"]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
