"""The worker process: fetch, collate into a slot, hand the slot back.

`worker_main` is the target of every worker process. It follows NOTE
[fastload worker protocol] in `protocol.py`: it seeds itself exactly as
torch's workers do (so augmentations draw the same random numbers), exposes
`torch.utils.data.get_worker_info()`, runs `worker_init_fn`, then serves
tasks until STOP, until its parent dies, or until the pipe closes. (Not
PR_SET_PDEATHSIG: Linux sends it when the parent *thread* exits, which
would kill the workers of a loader iterated from a thread that has since
ended; the pipe's EOF and a `getppid()` check catch a dead parent instead.)
"""

from __future__ import annotations

import ctypes
import os
import random
import select
import signal

from fastload.pool import SharedArena, SlotWriter
from fastload.torch_private import DatasetKind, ExceptionWrapper, numpy_seed, set_worker_info
from fastload.store import mark_leaf_process
from fastload.workers import protocol
from fastload.workers.codec import encode_batch, encode_computed_batch
from fastload.workers.collate import ComputedBatchCollate, current_slot, slot_array, slot_collate

__all__ = ["worker_main"]


def _seed_like_torch(config: protocol.WorkerConfig) -> int:
    import numpy as np
    import torch

    seed = config.base_seed + config.worker_id
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(numpy_seed(config.base_seed, config.worker_id))
    set_worker_info(worker_id=config.worker_id, num_workers=config.num_workers, seed=seed, dataset=config.dataset)
    return seed


class _BatchWritingFetcher:
    """For datasets that compute whole batches (`__fastload_batch__`, e.g. `PackedDataset`):
    the dataset writes the batch's arrays straight into the slot; they become tensors in place."""

    writes_into_slot = True

    def __init__(self, dataset, collate_fn: ComputedBatchCollate):
        self.dataset, self.collate_fn = dataset, collate_fn

    def fetch(self, key):
        if isinstance(key, protocol.Share):  # this worker's rows of a batch the workers compute together
            return self.dataset.__fastload_batch__(key.key, slot_array, rows=(key.lo, key.hi))
        return self.dataset.__fastload_batch__(key, slot_array)  # numpy arrays; see _encode


def _make_fetcher(config: protocol.WorkerConfig):
    if (
        config.dataset_kind == DatasetKind.Map
        and not config.auto_collation
        and hasattr(config.dataset, "__fastload_batch__")
        and isinstance(config.collate_fn, ComputedBatchCollate)
    ):
        return _BatchWritingFetcher(config.dataset, config.collate_fn)
    collate_fn = slot_collate if config.uses_default_collate else config.collate_fn
    return DatasetKind.create_fetcher(config.dataset_kind, config.dataset, config.auto_collation, collate_fn, config.drop_last)


def worker_main(config: protocol.WorkerConfig, conn) -> None:
    """Serve tasks on `conn`. See NOTE [fastload worker protocol]."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _repeated.forget()  # nothing described yet: the main process keeps layouts from this worker's start
    torch.set_num_threads(1)
    mark_leaf_process()  # a worker never forks: remote datasets may read through obstore here
    arenas: dict[int, tuple] = {}  # arena id -> (arena, slot bytes, {slot: (view, address)})
    try:
        _seed_like_torch(config)
        if config.worker_init_fn is not None:
            config.worker_init_fn(config.worker_id)
        fetcher = _make_fetcher(config)
    except Exception:
        protocol.send(conn, (protocol.ERROR, None, ExceptionWrapper(where=f"in DataLoader worker process {config.worker_id}")))
        return
    protocol.send(conn, (protocol.READY, config.worker_id))
    poller = select.poll()  # registered once: Connection.poll builds a selector every call (~15 µs a task)
    poller.register(conn.fileno(), select.POLLIN)
    while True:
        if not poller.poll(protocol.POLL_S * 1000):
            if os.getppid() != config.parent_pid:
                return  # the main process is gone
            continue
        try:
            message = protocol.receive(conn)
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == protocol.STOP:
            return
        if kind == protocol.ARENA:
            _attach_arena(conn, message, arenas)
        elif kind == protocol.RESET:
            fetcher = _make_fetcher(config)
        elif kind == protocol.EXPECT:
            reader = protocol.remote_reader(config.dataset)
            if reader is not None:
                reader.expect(message[1], fetch_ahead=message[2])
        elif kind == protocol.TASKS:
            _run_tasks(config, fetcher, conn, message[1], arenas)
        elif kind == protocol.SHARES:
            _, lo, hi, describe, key_type, items = message
            make = key_type._make if key_type is not None else None
            tasks = [(task_id, slot, protocol.Share(make(key) if make else key, lo, hi, describe)) for task_id, slot, key in items]
            _run_tasks(config, fetcher, conn, tasks, arenas)
        else:
            _reply(conn, *_run_task(config, fetcher, message, arenas))


def _attach_arena(conn, message: tuple, arenas: dict) -> None:
    """Map the pool's new arena and drop older ones: no later task names them. See NOTE [fastload worker protocol]."""
    from multiprocessing.reduction import recv_handle

    _, arena_id, slot_bytes, num_bytes = message
    fd = recv_handle(conn)
    arenas[arena_id] = (SharedArena.attach(fd, num_bytes), slot_bytes, {})  # the arena, its slots' size, their views
    for old in [a for a in arenas if a < arena_id]:
        arenas.pop(old)[0].close()


def _run_tasks(config: protocol.WorkerConfig, fetcher, conn, tasks: list, arenas: dict) -> None:
    """Run a group of tasks and answer them with one MANY message (one wake-up of the main process
    for the group). A reply that carries a file descriptor goes on its own, after the ones before it.

    See NOTE [fastload worker protocol].
    """
    replies = []
    for task_id, slot, index in tasks:
        reply, fd = _run_task(config, fetcher, (protocol.TASK, task_id, slot, index), arenas)
        if fd is None:
            replies.append(reply)
            continue
        if replies:
            protocol.send(conn, (protocol.MANY, replies))
            replies = []
        _reply(conn, reply, fd)
    if replies:
        protocol.send(conn, (protocol.MANY, replies) if len(replies) > 1 else replies[0])


def _reply(conn, reply: tuple, fd: int | None) -> None:
    """Send one task's reply, and the fd of its dedicated segment if it has one. See NOTE [fastload worker protocol]."""
    from multiprocessing.reduction import send_handle

    protocol.send(conn, reply)
    if fd is not None:
        send_handle(conn, fd, os.getppid())
        os.close(fd)


def _run_task(config: protocol.WorkerConfig, fetcher, message: tuple, arenas: dict) -> tuple[tuple, int | None]:
    """Fetch and collate one batch into its slot (or a segment of its own): (reply, fd to send or None).

    See NOTE [fastload worker protocol].
    """
    _, task_id, slot, index = message
    writer = slot_address = None
    if slot is not protocol.DEDICATED and slot[0] in arenas:
        arena, slot_bytes, views = arenas[slot[0]]
        found = views.get(slot[1])
        if found is None:  # a slot's view and address are made once, not every task
            view = arena.view(slot[1] * slot_bytes, slot_bytes)
            found = views[slot[1]] = (view, ctypes.addressof(view))
        writer, slot_address = SlotWriter(found[0], slot_bytes), found[1]
    try:
        with current_slot(writer if config.uses_default_collate or getattr(fetcher, "writes_into_slot", False) else None):
            batch = fetcher.fetch(index)
        if isinstance(index, protocol.Share):
            skeleton, leaves, used = _encode_share(fetcher, batch, writer, slot_address or 0, index)
            fd = None
        else:
            skeleton, leaves, used, fd = _encode(fetcher, batch, writer, slot_address or 0)
        del batch
    except StopIteration:
        return (protocol.END, task_id), None
    except Exception:
        where = f"in DataLoader worker process {config.worker_id} while loading batch {task_id} (indices {index!r:.200})"
        return (protocol.ERROR, task_id, ExceptionWrapper(where=where)), None
    if fd is None:
        if skeleton is None:  # a share another worker describes
            return task_id, None
        return _repeated.shorten((protocol.BATCH, task_id, slot, used, skeleton, leaves)), None
    return (protocol.BATCH, task_id, protocol.DEDICATED, used, skeleton, leaves), fd


class _LastDescription:
    """The layout of this worker's last batch in a slot (used bytes, skeleton, leaves). The batches of
    an epoch are usually laid out alike; a batch laid out as the last one is answered with its task id
    alone, and the main process, which keeps each worker's last layout, rebuilds the reply."""

    def __init__(self):
        self.last = None

    def forget(self) -> None:
        self.last = None

    def shorten(self, reply: tuple):
        layout = reply[3:6]
        if layout == self.last:
            return reply[1]
        self.last = layout
        return reply


_repeated = _LastDescription()


def _encode_share(fetcher, batch, writer, slot_address: int, share: protocol.Share):
    """A share's batch lies in its slot like a whole computed batch; only the describing worker sends
    the description. A share that did not fit its slot cannot be merged with the others: an error."""
    encoded = encode_computed_batch(batch, fetcher.collate_fn.tensor_dtypes, writer, slot_address) if writer is not None else None
    if encoded is None:
        raise RuntimeError(
            "a batch computed by several workers together did not fit the slot sized for it: the dataset's arrays "
            "for no rows (how the slots are sized) must have the shapes of its arrays for any rows"
        )
    skeleton, leaves, used, _ = encoded
    return (skeleton, leaves, used) if share.describe else (None, None, used)


def _encode(fetcher, batch, writer, slot_address: int):
    """A computed batch already lies in its slot: describe it directly (~20 µs less than the generic
    pickling walk); anything else, or a computed batch that did not fit, goes the generic way."""
    if isinstance(fetcher, _BatchWritingFetcher):
        if writer is not None:
            encoded = encode_computed_batch(batch, fetcher.collate_fn.tensor_dtypes, writer, slot_address)
            if encoded is not None:
                return encoded
        batch = fetcher.collate_fn(batch)
    return encode_batch(batch, writer, slot_address)
