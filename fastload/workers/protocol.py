"""The worker protocol: every message between the main process and a worker.

NOTE [fastload worker protocol]
===============================

One duplex pipe per worker carries small pickled tuples (and, with them,
file descriptors); batch data never goes through it, it is written once into
shared memory (see `fastload/pool.py`).

    main (loader iterator)                         worker k
    ──────────────────────                         ────────
    start ── Process(config, pipe) ─────────────►  seed, worker_info, worker_init_fn
                                                   ◄── READY  (or ERROR, then exit)
    pool  ── ARENA(id, slot_bytes) + fd ─────────►  map the arena
    hand-off
          ── TASK(task_id, slot, index) ─────────►  fetch + collate, straight into the slot
                                                   ◄── BATCH(task_id, slot, used, skeleton, leaves)
                                                   ◄── BATCH(task_id, DEDICATED, ...) + fd
                                                       (no slot given, or the batch did not fit)
    grouped hand-off (datasets that compute whole batches: one wake-up per group)
          ── TASKS([(task_id, slot, index), ...]) ►  each as a TASK, in order
                                                   ◄── MANY([BATCH or ERROR, ...])
                                                       (a BATCH with an fd travels alone, as above)
    shared batches (a dataset that `splits_rows`, a sampler with `worker_rows`)
          ── SHARES(lo, hi, describe, key_type, [(task_id, slot, key), ...]) to EVERY worker,
             each with its own rows [lo, hi) of the same batches and slots (keys of a
             namedtuple `key_type` travel as plain tuples: pickling a namedtuple runs Python)
                                                   writes only its rows, into the whole batch's arrays
                                                   ◄── BATCH(task_id, slot, used, skeleton, leaves) from the
                                                       worker that describes the batch (worker 0); the
                                                       task id alone from the others
             the batch is done when every share is back; the slots are sized before the
             first share is sent (the dataset's arrays for no rows give their shapes), so a
             share never needs a segment of its own; when the training loop holds every
             slot, the batch goes whole to one worker as a plain TASK.
    a layout repeated (any BATCH in a slot)        ◄── task_id alone: a BATCH in its slot whose used bytes,
                                                       skeleton and leaves are those of this worker's last
                                                       BATCH in a slot (an epoch's batches usually are)
    error                                          ◄── ERROR(task_id, ExceptionWrapper)
    epoch end (iterable dataset exhausted)         ◄── END(task_id)
    read-ahead (a remote dataset, a sampler that knows its order; each epoch)
          ── EXPECT(blocks, n) ──────────────────►  dataset.expect(blocks, fetch_ahead=n): fetch ahead along the first n
    next epoch, persistent workers
          ── RESET ──────────────────────────────►  restart the dataset iterator
    shutdown
          ── STOP ───────────────────────────────►  exit 0
    main dies: the worker's pipe reaches EOF (or its parent pid changes, checked
    every POLL_S) and it exits. A worker that dies is seen by the main process
    through its pipe's EOF or its sentinel, at once, and raised as an error
    naming it and the signal.

Why workers share batches (issue 15). With the block_window order every
batch reaches into every partition's current window, so when each worker
computed whole batches in turn, every worker loaded (read, CRC-checked,
decompressed, tokenized) nearly every block: W workers did W times the
block work of one, and tokens/s fell as workers were added. Three ways out
were weighed:
  - workers share each batch (built): the geometry already cuts a rank's
    columns into partitions that read disjoint blocks (`worker_columns`),
    so giving each worker a fixed run of partitions makes each block one
    worker's, with no state shared between processes. Measured: block loads
    per epoch with 1, 2 and 4 workers equal those of one process (plus at
    most one per cut between workers: a block a partition boundary splits;
    tests/loader/test_shared_batches.py); the first batch is computed by
    all workers at once.
  - a decoded-block cache shared between processes: every block would
    still be decoded once, but it needs a cross-process allocator, reference
    counts and eviction that agree across workers (what the node's download
    cache, `store/block_cache.py`, needs record locks for), and a worker
    waits while another decodes the block it wants. Not built.
  - threads running the nogil kernels: one decoded copy for free, but
    reading and planning hold the GIL, which the training loop's thread
    then competes for. Not built or measured.
What a share costs: each worker's wake-up and reply per message, so shared
batches travel TASK_GROUP x workers to a message, and a batch laid out like
the worker's last one is answered with its task id alone.

Rules: the main process owns the pool — it creates every arena, decides
which slot a task may use (a free one, or none), and returns a slot when the
last tensor of its batch dies. A worker only writes into the slot of the
task it is running. Every function that sends or receives one of these
messages says so with "See NOTE [fastload worker protocol]".
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

__all__ = ["READY", "ARENA", "TASK", "TASKS", "BATCH", "MANY", "ERROR", "END", "RESET", "STOP", "EXPECT", "SHARES", "DEDICATED", "POLL_S", "Share", "WorkerConfig", "send", "receive", "remote_reader"]

READY, ARENA, TASK, BATCH, ERROR, END, RESET, STOP = "ready", "arena", "task", "batch", "error", "end", "reset", "stop"
TASKS, MANY = "tasks", "many"  # a group of tasks, and the replies to one
SHARES = "shares"  # a worker's rows of a group of batches the workers compute together
EXPECT = "expect"  # the blocks the coming batches read, in order, and how many to fetch ahead (read-ahead for remote datasets)
DEDICATED = None  # the slot of a batch that travels in its own segment
POLL_S = 1.0  # how often an idle worker checks that its parent is alive


class Share(NamedTuple):
    """One worker's part of a shared batch: rows [lo, hi) of batch `key`; `describe`: this worker's
    reply carries the batch's description (one worker's does)."""

    key: Any
    lo: int
    hi: int
    describe: bool


@dataclass
class WorkerConfig:
    """What a worker needs to start; pickled once per worker (spawn/forkserver) or inherited (fork)."""

    worker_id: int
    num_workers: int
    dataset: Any
    dataset_kind: int  # torch_private.DatasetKind.Map / .Iterable
    auto_collation: bool
    collate_fn: Callable
    uses_default_collate: bool  # then the batch is stacked straight into the slot
    drop_last: bool
    base_seed: int
    worker_init_fn: Callable | None
    parent_pid: int


def remote_reader(dataset):
    """The remote `fastload.Dataset` that `dataset`'s batches read (itself, or the one a padded or
    array dataset wraps), or None: only a remote dataset has anything to fetch ahead."""
    for candidate in (dataset, getattr(dataset, "dataset", None)):
        if getattr(candidate, "remote", None) is not None and callable(getattr(candidate, "expect", None)):
            return candidate
    return None


def send(conn, message: tuple) -> None:
    """Send one protocol message: plain pickle (multiprocessing's ForkingPickler costs ~1.5 µs more a message)."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn) -> tuple:
    """Receive one protocol message sent with `send`; EOFError/OSError when the other end is gone."""
    return pickle.loads(conn.recv_bytes())
