"""The progress lines of a training run: one line per metrics record, the text `fastload train` prints.

    format_record({"kind": "train", "step": 10, "loss": 9.40, ...})
    # 'step     10  loss 9.401  lr 5.00e-04    1389.5 ms/step         737 tok/s  data wait  0.03%'

`train()` hands every record to `write_progress` unless it is `quiet` or the
caller takes the records with `on_record=` (the CLI does, and prints the
same lines to stdout). The library writes to stderr, as `convert`'s progress
bar does: stdout belongs to the caller (STYLE.md, "only the CLI writes to
stdout"). Each line is flushed, so a run whose output is piped or redirected
shows its progress as it happens, not when a buffer fills. What is not here:
the records themselves (`metrics.py`) and when they are made (`loop.py`).
"""

from __future__ import annotations

import sys

__all__ = ["format_record", "write_progress"]


def format_record(record: dict) -> str:
    """The line for one metrics record ("start", "train", "eval" or "end")."""
    kind, step = record["kind"], record["step"]
    if kind == "start":
        m = record["model"]
        resumed = f", resuming at step {step}" if record["resumed"] else ""
        return (f"training GPT {m['n_layer']} layers x {m['n_embd']} ({record['parameters'] / 1e6:.1f} M parameters, {m['position']} positions) "
                f"on {record['device']} in {record['precision']}, {record['world_size']} rank(s), {record['workers']} loader workers; "
                f"{record['tokens_per_step']:,} tokens a step{resumed}")
    if kind == "train":
        sources = record.get("sources")  # a mixture: tokens each source delivered so far
        mix = "  tokens " + "  ".join(f"{name} {_amount(c['tokens'])}" for name, c in sources.items()) if sources else ""
        return (f"step {step:6d}  loss {_num(record['loss'])}  lr {record['lr']:.2e}  {record['step_time_ms']:8.1f} ms/step  "
                f"{record['tokens_per_s']:10,.0f} tok/s  data wait {record['data_wait_pct']:5.2f}%{mix}")
    if kind == "eval":
        stop = "  early stop" if record["early_stop"] else ""
        return f"eval {step:6d}  val_loss {_num(record['val_loss'])}  ppl {record['val_ppl']:,.1f}  best {_num(record['best_val_loss'])}{stop}"
    if kind == "end":
        early = f" (stopped early: {record['reason']})" if record.get("reason") else " (stopped early)" if record["stopped_early"] else ""
        return f"done at step {step}{early}: best val_loss {_num(record['best_val_loss'])}"
    raise ValueError(f"unknown metrics record kind {kind!r}; expected start, train, eval or end")


def write_progress(record: dict) -> None:
    """`format_record(record)` on stderr (the one in force now, so redirecting it works), flushed."""
    stream = sys.stderr
    stream.write(format_record(record) + "\n")
    stream.flush()


def _amount(n: int) -> str:
    """A count in a few characters: 950, 12.3k, 4.56M, 1.20G."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"
