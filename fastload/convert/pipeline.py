"""`fastload.convert`: inputs → partitions → an engine runs each → the driver merges them into one dataset.

    plan (driver)                  engine: local (this process) or Ray (a task each)      merge (driver)
    inputs cut into partitions ──► per partition: chunks → threads → its own writer ──►  fragments in partition
    (`partitions.py`)              → shards shard-PPPPP-KKKK.arrow (`partition_work.py`)   order → index.json last

Every engine runs the same function on the same partitions and the driver
merges fragments in partition order (`merge.py`), so the dataset is
byte-identical for every engine, number of workers, task order and retry.
The local engine converts partitions one after the other, each on `workers`
threads; the Ray engine (`fastload.ray`) runs a task per partition, each on
`workers` threads and as many Ray CPUs.

The output folder is held (`format.output.OutputFolder`: a lock, so a second
conversion into it is refused) before any input is read, and a failed or
interrupted conversion removes exactly what it created, partitions' files
included. An output URL (`s3://bucket/prefix`) goes through
`format.remote_output.RemoteOutput`: each partition uploads its shards as
they are finished, `index.json` last. The Numba kernels a conversion runs (the
tokenizer's, the JSON Lines scanner's) are compiled (or loaded from Numba's cache) before the clock starts, so the MB/s figure
measures conversion, and the summary shows that time apart.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from fastload.convert.merge import DatasetAssembly, finish_conversion
from fastload.convert.normalize import TOKENS_COLUMN
from fastload.convert.parse import FLAT_JSON_MIN_BYTES
from fastload.convert.partition_work import Fragment, PartitionJob, convert_partition, resolve_tokenizer, warm_up, write_partition
from fastload.convert.line_ends import plan_in_rounds
from fastload.convert.partitions import Partition, plan_partitions
from fastload.convert.resume import reusable_fragments
from fastload.convert.sources import COMPRESSED, find_inputs, object_chunks
from fastload.environment import flat_json_disabled
from fastload.errors import ConfigError
from fastload.format.index import DatasetIndex
from fastload.format.remote_output import open_output
from fastload.format.writer import WriteOptions
from fastload.store import RetryPolicy, is_remote, local_path

__all__ = ["convert", "ConvertResult", "ENGINES"]

ON_ERROR = ("fail", "skip")
ENGINES = ("local", "ray")
_WARMUP_SHOWN_S = 0.05  # kernel warm-up shorter than this goes unmentioned in the summary
# Input per partition, in shards: a partition's writer shares its output evenly among the
# nearest whole number of shards (`DatasetWriter._ends_shard`), within 1/(2n) of shard_bytes for n
# shards, so several per partition keep them all within ±10%; one partition of the default 1 GiB
# is seconds of work for a task.
PARTITION_SHARDS = 8


@dataclass
class ConvertResult:
    """What a conversion did; `str()` is the summary the CLI prints."""

    path: Path | str  # a folder, or the URL it was uploaded to
    index: DatasetIndex
    bytes_in: int
    seconds: float  # the conversion itself, which the MB/s figure divides by
    num_skipped_rows: int
    dropped_columns: list[str] = field(default_factory=list)
    warmup_seconds: float = 0.0  # before `seconds`: compiling the kernels (tokenizer, JSON scanner), or loading them from Numba's cache
    engine: str = "local"
    num_partitions: int = 1
    peak_memory_bytes: int = 0  # the largest peak resident memory of a process that converted a partition

    @property
    def num_rows(self) -> int:
        return self.index.num_rows

    @property
    def num_tokens(self) -> int:
        stats = self.index.stats.get(TOKENS_COLUMN) or {}
        return int(stats.get("tokens", 0))

    def __str__(self) -> str:
        mb_in, mb_out = self.bytes_in / 1e6, self.index.num_bytes / 1e6
        lines = [
            f"dataset      {self.path}",
            f"rows         {self.num_rows:,}" + (f"   ({self.num_skipped_rows:,} skipped)" if self.num_skipped_rows else ""),
            f"shards       {len(self.index.shards):,}   blocks {self.index.num_blocks:,}",
            f"bytes        {mb_in:,.1f} MB in -> {mb_out:,.1f} MB out ({self.index.compression})",
        ]
        if self.num_tokens:
            lines.append(f"tokens       {self.num_tokens:,}")
        if self.dropped_columns:
            lines.append(f"dropped      {', '.join(self.dropped_columns)} (null in every row)")
        rate = mb_in / self.seconds if self.seconds > 0 else float("inf")
        lines.append(f"time         {self.seconds:,.2f} s   ({rate:,.1f} MB/s in)")
        if self.engine != "local":
            lines.append(f"engine       {self.engine}: {self.num_partitions:,} partition(s), peak memory per task {self.peak_memory_bytes / 1e6:,.0f} MB")
        if self.warmup_seconds >= _WARMUP_SHOWN_S:
            lines.append(
                f"             + {self.warmup_seconds:,.2f} s before that to compile fastload's kernels "
                "(or load them from Numba's cache), not counted in MB/s"
            )
        return "\n".join(lines)


def _progress(total: int | None, quiet: bool):
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="convert", disable=disable)


def convert(
    source,
    out: str | os.PathLike,
    *,
    columns: Iterable[str] | None = None,
    text_field: str = "text",
    tokenizer=None,
    keep_text: bool = False,
    input_format: str | None = None,
    text_lines: bool = False,
    shard_bytes: int = WriteOptions.shard_bytes,
    block_bytes: int = WriteOptions.block_bytes,
    block_rows: int | None = None,
    compression: str = "none",
    partition_bytes: int | None = None,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    on_error: str = "fail",
    overwrite: bool = False,
    resume: bool = False,
    quiet: bool = False,
    storage_options: dict | None = None,
    retry: RetryPolicy | None = None,
    staging_dir: str | os.PathLike | None = None,
) -> ConvertResult:
    """Convert files (paths, folders, globs) or an in-memory source into a fastload dataset at `out`.

    Inputs may be URLs too (`s3://bucket/corpus/`, `gs://…/*.jsonl.gz`, `az://`,
    `https://…/file.jsonl`): an object, every object under a prefix, or the
    keys a pattern matches, read by ranged GETs (`convert.remote_inputs`),
    with `storage_options` and `retry` as for the output.

    `out` may be a URL (`s3://bucket/prefix`, `gs://`, `az://`): shards are
    staged in a temporary folder under `staging_dir` (default: the system's)
    and uploaded as each is finished, `index.json` last; `storage_options`
    and `retry` (a `fastload.RetryPolicy`) are as for `fastload.Dataset`.

    `engine="ray"` converts each partition of about `partition_bytes` of
    input (default `8 * shard_bytes`) in a Ray task, on the cluster at
    `ray_address` (default: the one `ray.init()` finds or starts), with
    `workers` threads and Ray CPUs per task; the dataset is byte-identical
    to `engine="local"`'s. Needs `pip install 'fastload[ray]'`.

    `resume=True` reruns a conversion that was killed into the same folder:
    partitions it finished whose shards still match their CRC-32 are not
    converted again (`convert.resume`); the dataset is the same bytes.

    See `fastload convert --help` for the options; the Python names are the
    same in snake_case. Returns a `ConvertResult`; raises `ConvertError`
    naming the file and line on bad input, and leaves no complete-looking
    dataset behind when it fails.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, found {on_error!r}")
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, found {engine!r}")
    if workers is not None and (type(workers) is not int or workers < 1):
        raise ConfigError(f"workers must be a positive integer, found {workers!r}")
    options = WriteOptions(shard_bytes=shard_bytes, block_bytes=block_bytes, block_rows=block_rows, compression=compression)
    partition_bytes = PARTITION_SHARDS * shard_bytes if partition_bytes is None else partition_bytes
    if type(partition_bytes) is not int or partition_bytes < 1:
        raise ConfigError(f"partition_bytes must be a positive integer number of bytes, found {partition_bytes!r}")
    columns = tuple(columns) if columns is not None else None
    remote = is_remote(out)
    out = str(out).rstrip("/") if remote else local_path(out)  # a URL stays text: Path would fold "s3://" into "s3:/"
    partitions, input_names, total = _plan(
        source, input_format=input_format, text_lines=text_lines, partition_bytes=partition_bytes, out=out, storage_options=storage_options, retry=retry
    )
    if engine == "ray" and partitions is None:
        raise ConfigError(
            "the ray engine converts files (paths, folders, globs); to write an in-memory or Ray Data "
            "pipeline's rows, use ray_dataset.write_datasink(fastload.ray.Datasink(...)) or engine='local'"
        )
    resolved = resolve_tokenizer(tokenizer)  # a bad name fails here, before anything is written
    if engine == "local":
        tokenizer = resolved  # loaded once, its kernels warmed up before the clock starts
        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    # (the Ray engine sends a tokenizer's name, and each task's process loads it once)
    # Held before any input is read: a second conversion into `out` is refused at once.
    output = open_output(out, overwrite=overwrite, storage_options=storage_options, retry=retry, staging_dir=staging_dir, resume=resume)
    job = PartitionJob(
        out=str(out), write=options, columns=columns, text_field=text_field, tokenizer=tokenizer, keep_text=keep_text,
        on_error=on_error, text_lines=text_lines, workers=workers or 0, storage_options=storage_options, retry=retry,
        staging_dir=None if staging_dir is None else str(staging_dir), take_down_index=output.index_to_take_down,
        flat_json=partitions is not None and _json_lines_bytes(partitions) >= FLAT_JSON_MIN_BYTES and not flat_json_disabled(),
    )
    assembly = DatasetAssembly(output, options)
    progress = None
    try:
        warmup_seconds = warm_up(tokenizer, flat_json=job.flat_json) if engine == "local" else 0.0
        started = time.perf_counter()
        progress = _progress(total, quiet)
        fragments = _fragments(engine, source, partitions, job, resume=resume, ray_address=ray_address, progress=progress)
        with closing(fragments):  # on an error, tasks still running are stopped before `abort` cleans up
            for partition, fragment in fragments:
                assembly.add(fragment, partition)
        index = finish_conversion(assembly, job, input_names=input_names)
    except BaseException:
        assembly.abort()  # removes exactly what this conversion created
        raise
    finally:
        if progress is not None:
            progress.close()
    return ConvertResult(
        out, index, assembly.bytes_in, time.perf_counter() - started, assembly.num_skipped_rows, assembly.dropped_columns,
        warmup_seconds=warmup_seconds, engine=engine,
        num_partitions=len(partitions) if partitions is not None else 1, peak_memory_bytes=assembly.peak_memory_bytes,
    )


def _plan(source, *, input_format, text_lines: bool, partition_bytes: int, out: Path | str, storage_options, retry) -> tuple[list[Partition] | None, list[str], int | None]:
    """(the partitions of the input files, or None for an in-memory source; names of the inputs; total input bytes when known)."""
    if isinstance(source, (str, os.PathLike)) or (isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source)):
        paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        exclude = out if isinstance(out, str) else out.resolve()  # (a URL stays text)
        files = find_inputs(paths, input_format=input_format, exclude=exclude, storage_options=storage_options, retry=retry)
        total = None if any(f.compression in COMPRESSED for f in files) else sum(f.num_bytes for f in files)
        plan = plan_in_rounds if any(f.store is not None for f in files) else plan_partitions  # (objects: each cut is a round trip)
        return plan(files, partition_bytes=partition_bytes, text_lines=text_lines), [str(s) for s in paths], total
    return None, [f"<{type(source).__module__}.{type(source).__name__}>"], None


def _json_lines_bytes(partitions: list[Partition]) -> int:
    """About how many bytes of JSON Lines the input holds: compressed files count 4 times their size (text compresses 3-5x)."""
    files = {piece.file.path: piece.file for partition in partitions for piece in partition.pieces}.values()
    return sum(f.num_bytes * (4 if f.compression else 1) for f in files if f.fmt == "jsonl")


def _fragments(engine: str, source, partitions: list[Partition] | None, job: PartitionJob, *, resume: bool, ray_address, progress) -> Iterator:
    """(partition, fragment) for every partition in partition order, from `engine`, or from disk for those `resume` reuses."""
    reused = reusable_fragments(Path(job.out), partitions, job) if resume and partitions else {}
    to_convert = None if partitions is None else [p for p in partitions if p.partition_id not in reused]
    if engine == "ray":
        from fastload.ray import run_partitions

        fragments = run_partitions(to_convert, job, address=ray_address, progress=progress)
    else:
        fragments = _run_local(source, to_convert, job, progress)
    if not reused:
        return fragments
    progress.update(sum(p.num_bytes for p in partitions if p.partition_id in reused))
    return _with_reused(partitions, reused, fragments)


def _with_reused(partitions: list[Partition], reused: dict[int, Fragment], converted: Iterator) -> Iterator[tuple[Partition, Fragment]]:
    """Every partition's fragment in partition order: reused ones from disk, the others as `converted` yields them."""
    with closing(converted):
        for partition in partitions:
            yield (partition, reused[partition.partition_id]) if partition.partition_id in reused else next(converted)


def _run_local(source, partitions: list[Partition] | None, job: PartitionJob, progress) -> Iterator[tuple[Partition | None, Fragment]]:
    """The local engine: partition after partition in this process, the progress bar moving chunk by chunk."""
    rows = 0

    def advance(num_bytes: int, num_rows: int) -> None:
        nonlocal rows
        rows += num_rows
        progress.set_postfix_str(f"{rows:,} rows", refresh=False)
        progress.update(num_bytes)

    if partitions is None:
        yield None, write_partition(0, ((0, chunk) for chunk in object_chunks(source)), job, num_pieces=1, progress=advance)
        return
    for partition in partitions:
        yield partition, convert_partition(partition, job, progress=advance)
