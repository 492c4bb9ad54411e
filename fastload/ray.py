"""fastload on Ray: the Ray engine of `fastload convert` (`engine="ray"`, `--engine ray`).

Every bit of Ray lives in this module, imported only when asked for, so that
fastload works without Ray and a change in Ray's APIs is fixed in one place
(the extra `fastload[ray]` pins the tested range).

    driver (this process)                          Ray tasks, one per partition
    plan partitions ──► submit convert_partition ──► chunks → threads → shards (temporary names or uploads)
    merge fragments in partition order ◄── Fragment ◄┘
    → index.json last (`convert.merge`)

The engine is the local engine's function run remotely: each task converts
one partition (`convert.partition_work.convert_partition`) with `workers`
threads and asks Ray for as many CPUs; the driver takes the fragments in
partition order, however the tasks were scheduled, so the dataset is
byte-identical to a local conversion. The output (a folder every node sees,
or an object-store URL) is held by the driver; tasks write there directly,
so no shard passes through Ray's object store, only fragments (a few KB).

The Ray Data way in and out: `Datasink(path, tokenizer=...)` for
`ray_dataset.write_datasink(...)` writes a fastload dataset from any Ray Data
pipeline, each write task converting its blocks into a partition of its own
(`write_partition`, the same function), the driver merging the fragments in
task order; `Datasource(path)` for `ray.data.read_datasource(...)` reads a
fastload dataset, one read task per shard, one Ray block per fastload block
(each checked against its CRC). Both are built on first use (a module
`__getattr__`), so importing this module never needs Ray.

Faults: a task whose process dies (a lost node, an out-of-memory kill) is
retried by Ray up to `MAX_RETRIES` times; shard names come from the
partition, so a retry writes the same names again, replacing what the killed
attempt left, and the dataset has no duplicate, missing or stray file. An
error raised by the conversion itself (a bad line, a type conflict) is not
retried: it is the same on every attempt. When the conversion fails, tasks
still running are cancelled and waited for before the driver removes every
file of the run.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path
from typing import Iterator

from fastload.convert.merge import DatasetAssembly, finish_conversion
from fastload.convert.partition_work import Fragment, PartitionJob, convert_partition, resolve_tokenizer, write_partition
from fastload.convert.partitions import Partition
from fastload.convert.sources import object_chunks
from fastload.errors import ConfigError
from fastload.format.remote_output import open_output
from fastload.format.writer import WriteOptions
from fastload.store import RetryPolicy, is_remote, local_path

__all__ = ["run_partitions", "Datasink", "Datasource", "MAX_RETRIES", "RAY_VERSIONS"]

MAX_RETRIES = 3  # attempts after a task's process died; Ray's own default for tasks
RAY_VERSIONS = ">=2.60,<2.61"  # the range pyproject.toml's `ray` extra pins; Ray's Data APIs change between minors
_TESTED_MINORS = ((2, 60),)  # the same range, as (major, minor)
_DEFAULT_WORKERS = 4  # threads (and Ray CPUs) per task when not given, at most a node's CPUs: as the local engine
_CANCEL_WAIT_S = 30.0  # how long a failed conversion waits for cancelled tasks to stop writing


def import_ray():
    """The `ray` module, or a `ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray engine needs Ray: pip install 'fastload[ray]' (on the driver and every node of the cluster)"
        ) from None
    found = tuple(int(part) for part in ray.__version__.split(".")[:2] if part.isdigit())
    if found not in _TESTED_MINORS:
        warnings.warn(
            f"fastload's Ray adapter is tested with ray{RAY_VERSIONS}, and ray {ray.__version__} is installed; Ray changes "
            "the Datasink/Datasource APIs between minor releases. If something fails, pip install 'fastload[ray]'",
            stacklevel=2,
        )
    return ray


def run_partitions(partitions: list[Partition], job: PartitionJob, *, address: str | None = None, progress=None) -> Iterator[tuple[Partition, Fragment]]:
    """Convert each partition in a Ray task; yield (partition, fragment) in partition order.

    Connects to the cluster at `address` (or the one `ray.init()` finds or
    starts) unless Ray is already initialised; a cluster this call started is
    shut down at the end. `progress` (a tqdm bar) advances by a partition's
    input bytes as each task finishes, in whatever order they finish.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False)
    try:
        nodes = [node for node in ray.nodes() if node.get("Alive")]  # one round trip to the cluster per conversion
        job = _with_workers(nodes, job)
        _require_picklable(ray, job.tokenizer)
        _require_paths_every_node_sees(nodes, partitions, job)
        task = _partition_task(ray).options(num_cpus=job.workers)
        shared_job = ray.put(job)
        refs = [task.remote(partition, shared_job) for partition in partitions]
        yield from _in_order(ray, partitions, refs, progress)
    finally:
        if started_here:
            ray.shutdown()


@functools.lru_cache(maxsize=1)
def _partition_task(ray):
    """`convert_partition` as a Ray task, made once: Ray pickles and exports a remote function once per
    job (about 6 ms, measured), where wrapping it again on every conversion exported it every time."""
    return ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(convert_partition)


def _require_picklable(ray, tokenizer) -> None:
    try:
        ray.cloudpickle.dumps(tokenizer)
    except Exception as exc:  # what pickling a tokenizer object raises varies (TypeError, PicklingError)
        raise ConfigError(
            f"the tokenizer cannot be sent to Ray tasks ({type(exc).__name__}: {exc}); pass its name ('default', "
            "'bytes') or the path of its tokenizer.json / .tiktoken file, and each task loads it once"
        ) from None


def _require_paths_every_node_sees(nodes: list[dict], partitions: list[Partition], job: PartitionJob) -> None:
    """On a cluster of several (alive) `nodes`, a relative path means a different file on each: refuse it."""
    if len(nodes) < 2:
        return  # one node: its workers start in the driver's folder
    relative = [str(p.file.path) for partition in partitions for p in partition.pieces if p.file.store is None and not p.file.path.is_absolute()]
    if not is_remote(job.out) and not Path(job.out).is_absolute():
        relative.insert(0, job.out)
    if relative:
        raise ConfigError(
            f"the Ray cluster has several nodes, and {relative[0]!r} is a relative path, which each node would read "
            "from its own working folder; give absolute paths on a file system every node mounts, or URLs"
        )


def _with_workers(nodes: list[dict], job: PartitionJob) -> PartitionJob:
    """`job` with its threads per task decided: as given (and no more than one of the alive `nodes` has), or up to 4."""
    node_cpus = [int(node["Resources"].get("CPU", 0)) for node in nodes]
    largest = max(node_cpus, default=0)
    if largest < 1:
        raise ConfigError("the Ray cluster has no node with a CPU to run conversion tasks on")
    if job.workers == 0:
        return dataclasses.replace(job, workers=min(_DEFAULT_WORKERS, largest))
    if job.workers > largest:
        raise ConfigError(
            f"workers={job.workers} asks each Ray task for {job.workers} CPUs, but the largest node of the cluster "
            f"has {largest}; pass --workers {largest} or fewer"
        )
    return job


def _in_order(ray, partitions: list[Partition], refs: list, progress) -> Iterator[tuple[Partition, Fragment]]:
    """Yield each task's fragment in partition order; on any failure (or when the caller stops), cancel the rest."""
    size_of = {ref: partition.num_bytes for partition, ref in zip(partitions, refs)}
    done: set = set()
    pending = list(refs)
    try:
        for partition, ref in zip(partitions, refs):
            while ref not in done:
                ready, pending = ray.wait(pending, num_returns=1)
                for finished in ready:
                    done.add(finished)
                    if progress is not None:
                        progress.update(size_of[finished])
            yield partition, _result(ray, ref)
    finally:
        _stop(ray, pending)


def _result(ray, ref) -> Fragment:
    """The task's fragment; an error it raised comes back as the original exception, with its own message."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


def _stop(ray, pending: list) -> None:
    """Cancel tasks that are still running and wait for them, so none writes after the driver cleans up."""
    if not pending:
        return
    for ref in pending:
        ray.cancel(ref, force=True)
    try:
        ray.wait(pending, num_returns=len(pending), timeout=_CANCEL_WAIT_S)
    except Exception:  # a cancelled task's error: it has stopped, which is all we wait for
        pass


# -- Ray Data: Datasink and Datasource -------------------------------------------------------


def __getattr__(name: str):
    """`Datasink` and `Datasource`, subclasses of Ray Data's, made the first time they are asked for."""
    if name == "Datasink":
        return _datasink_class()
    if name == "Datasource":
        return _datasource_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=1)
def _datasink_class():
    ray = import_ray()

    class Datasink(ray.data.Datasink):
        """Write a Ray Data pipeline's rows as a fastload dataset: `ds.write_datasink(fastload.ray.Datasink(path, ...))`.

        `path` is a folder every node sees, or an object-store URL; the other
        options are `fastload.convert`'s. The output is held (locked, or its
        prefix checked) when the sink is made, on the driver. Each write task
        converts its blocks into a partition of its own; the driver merges
        them in task order and writes `index.json` last. `index` is the
        dataset's `DatasetIndex` once the write is done.
        """

        def __init__(
            self,
            path,
            *,
            tokenizer=None,
            text_field: str = "text",
            keep_text: bool = False,
            columns=None,
            shard_bytes: int = WriteOptions.shard_bytes,
            block_bytes: int = WriteOptions.block_bytes,
            block_rows: int | None = None,
            compression: str = "none",
            workers: int = 1,
            overwrite: bool = False,
            storage_options: dict | None = None,
            retry: RetryPolicy | None = None,
        ):
            resolve_tokenizer(tokenizer)  # a bad name fails here, on the driver
            _require_picklable(ray, tokenizer)
            self.path = str(path).rstrip("/") if is_remote(path) else local_path(path)
            self._output = open_output(self.path, overwrite=overwrite, storage_options=storage_options, retry=retry)
            options = WriteOptions(shard_bytes=shard_bytes, block_bytes=block_bytes, block_rows=block_rows, compression=compression)
            self._job = PartitionJob(
                out=str(self.path), write=options, columns=tuple(columns) if columns is not None else None,
                text_field=text_field, tokenizer=tokenizer, keep_text=keep_text, on_error="fail", text_lines=False,
                workers=workers, storage_options=storage_options, retry=retry, take_down_index=self._output.index_to_take_down,
            )
            self.index = None

        def __getstate__(self) -> dict:
            return {**self.__dict__, "_output": None}  # the driver's hold on the output never travels

        def get_name(self) -> str:
            return "fastload"

        def write(self, blocks, ctx) -> Fragment:
            def chunks():
                for block in blocks:
                    for chunk in object_chunks(_arrow_table(block)):
                        yield 0, chunk

            return write_partition(ctx.task_idx, chunks(), self._job, num_pieces=1)

        def on_write_complete(self, write_result) -> None:
            fragments = getattr(write_result, "write_returns", write_result)  # Ray < 2.39 passes the list itself
            assembly = DatasetAssembly(self._output, self._job.write)
            try:
                for fragment in sorted(fragments, key=lambda f: f.partition_id):
                    assembly.add(fragment, None)
                self.index = finish_conversion(assembly, self._job, input_names=["<ray.data.Dataset>"])
            except BaseException:
                assembly.abort()
                raise

        def on_write_failed(self, error: Exception) -> None:
            DatasetAssembly(self._output, self._job.write).abort()

    Datasink.__qualname__ = "Datasink"  # pickled by reference, as fastload.ray.Datasink (the module __getattr__)
    return Datasink


def _arrow_table(block):
    import pyarrow as pa

    if isinstance(block, pa.Table):
        return block
    return pa.Table.from_pandas(block, preserve_index=False)


@functools.lru_cache(maxsize=1)
def _datasource_class():
    ray = import_ray()
    from ray.data.block import BlockMetadata
    from ray.data.datasource import ReadTask

    from fastload.format.reader import Dataset

    class Datasource(ray.data.Datasource):
        """Read a fastload dataset into Ray Data: `ray.data.read_datasource(fastload.ray.Datasource(path))`.

        One read task per shard, one Ray block per fastload block, each
        checked against its CRC; columns keep their storage types (`tokens`
        as a list of uint16/uint32, ndarrays as fixed-size lists). Options
        are `fastload.Dataset`'s.
        """

        def __init__(self, path, *, storage_options: dict | None = None, retry: RetryPolicy | None = None, cache_dir=None):
            self._open = functools.partial(Dataset, path, storage_options=storage_options, retry=retry, cache_dir=cache_dir)
            self._dataset = self._open()

        def estimate_inmemory_data_size(self) -> int:
            return self._dataset.index.num_bytes

        def get_read_tasks(self, parallelism: int, **_) -> list:
            tasks, first_block = [], 0
            for info in self._dataset.index.shards:
                blocks = range(first_block, first_block + info.num_blocks)
                metadata = BlockMetadata(num_rows=info.num_rows, size_bytes=info.num_bytes, input_files=[info.file], exec_stats=None)
                tasks.append(ReadTask(functools.partial(_read_blocks, self._open, blocks), metadata))
                first_block += info.num_blocks
            return tasks

    Datasource.__qualname__ = "Datasource"
    return Datasource


def _read_blocks(open_dataset, blocks: range):
    import pyarrow as pa

    dataset = open_dataset()
    for block_id in blocks:
        yield pa.Table.from_batches([dataset.read_block(block_id)])
