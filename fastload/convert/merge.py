"""The driver's side of a conversion: partitions' fragments, in partition order, become one dataset, `index.json` last.

Every engine ends here. Fragments are taken strictly in partition order,
whatever order their tasks finished in, so the dataset (shard list, schema,
statistics) is the same for every engine and every schedule:

- the files a fragment wrote are adopted first (`OutputFolder.adopt`,
  `RemoteOutput.adopt`), so a failure from here on removes them;
- a bad line becomes `file, line N`: the lines of the file before the
  fragment's piece were counted by the partitions before it;
- the columns are merged exactly as chunks are within a partition
  (`columns.KnownColumns`). When the final schema differs from a
  partition's (a type widened later, a column null in every row of one
  partition, fields in another order), that partition's shards are
  rewritten with `writer.rewrite_shard`: rare, and one extra pass over those
  shards only;
- statistics are folded partition by partition (`ColumnStats.merge`): for a
  single partition they are exactly the writer's own.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from fastload.convert.columns import KnownColumns, lossy_promotion
from fastload.convert.normalize import TOKENS_COLUMN
from fastload.convert.partition_work import Fragment, PartitionJob, resolve_tokenizer
from fastload.convert.partitions import Partition, partition_of_shard
from fastload.errors import ConfigError, ConvertError, FormatError, StoreError
from fastload.format.index import DatasetIndex, ShardInfo, encode_index
from fastload.format.stats import ColumnStats, new_stats
from fastload.format.writer import WriteOptions, rewrite_shard, staged_name, write_failure

__all__ = ["DatasetAssembly", "finish_conversion"]

log = logging.getLogger("fastload.convert")


class DatasetAssembly:
    """Collects fragments in partition order; `finish` writes the dataset, `abort` removes every file of this run."""

    def __init__(self, output, options: WriteOptions):
        self.output, self.options = output, options
        self.known = KnownColumns()
        self.fragments: list[Fragment] = []
        self.bytes_in = 0
        self.num_skipped_rows = 0
        self.num_untyped_rows = 0
        self.input_fields: dict[str, None] = {}
        self.peak_memory_bytes = 0
        self._lines_seen: dict[Path, int] = {}  # input lines of each file in the partitions so far

    def add(self, fragment: Fragment, partition: Partition | None) -> None:
        """Take the next partition's fragment (`partition` None: an in-memory source, one fragment)."""
        for name, num_bytes in fragment.files.items():
            self.output.adopt(name, num_bytes)
        pieces = partition.pieces if partition is not None else ()
        if fragment.bad_line is not None:
            bad = fragment.bad_line
            piece = pieces[bad.piece] if pieces else None
            lines_before = self._lines_seen.get(piece.file.path, 0) if piece is not None and piece.start else 0
            raise bad.to_convert_error(lines_before)
        for piece, num_lines in zip(pieces, fragment.lines):
            self._lines_seen[piece.file.path] = (self._lines_seen.get(piece.file.path, 0) if piece.start else 0) + num_lines
        self.known.merge_known(fragment.known)
        self.input_fields.update(fragment.input_fields)
        self.bytes_in += fragment.bytes_in
        self.num_skipped_rows += fragment.num_skipped_rows
        self.num_untyped_rows += fragment.num_untyped_rows
        self.peak_memory_bytes = max(self.peak_memory_bytes, fragment.peak_memory_bytes)
        if fragment.written is not None:
            self.fragments.append(fragment)

    @property
    def num_rows(self) -> int:
        return sum(f.written.num_rows for f in self.fragments)

    @property
    def dropped_columns(self) -> list[str]:
        return self.known.dropped

    def finish(self, **index_fields) -> DatasetIndex:
        """Rewrite partitions whose columns differ from the final schema, then commit shards and `index.json`."""
        schema = self.known.schema()
        if self.num_untyped_rows:
            raise ConvertError(
                f"{self.num_untyped_rows:,} rows hold only nulls in every field, in a part of the input (a "
                "partition) where no field ever gets a type, so they cannot be stored; drop those rows, or leave "
                "the all-null fields out with --columns"
            )
        shards: list[ShardInfo] = []
        stats: dict[str, ColumnStats] = {c.name: new_stats(c) for c in schema}
        for fragment in self.fragments:
            written = fragment.written
            infos = list(written.shards)
            if written.schema != schema:
                infos = [self._rewrite(info, schema) for info in infos]
            shards += infos
            for column in schema:
                part = written.stats.get(column.name)
                if part is None:
                    part = new_stats(column)
                    part.add_nulls(written.num_rows)
                stats[column.name].merge(part)
        index = DatasetIndex(
            schema=schema,
            shards=tuple(shards),
            compression=self.options.compression,
            stats={name: s.to_json() for name, s in stats.items()},
            tokenizer=index_fields.get("tokenizer"),
            source=index_fields.get("source") or {},
            options={**self.options.to_json(), **(index_fields.get("options") or {})},
            num_skipped_rows=self.num_skipped_rows,
            created_by=index_fields.get("created_by", ""),
        )
        try:
            self.output.remove_temporaries({staged_name(s.file) for s in shards})  # fragment files, unused leftovers
            self.output.commit([(staged_name(s.file), s.file) for s in shards], encode_index(index))
        except (StoreError, OSError) as exc:
            raise write_failure(self.output, exc, num_shards=len(shards), where=self.output.path, abort=self.abort) from exc
        return index

    def _rewrite(self, info: ShardInfo, schema) -> ShardInfo:
        try:
            return rewrite_shard(self.output, info, schema, self.options.compression)
        except (StoreError, OSError) as exc:
            num_shards = sum(len(f.written.shards) for f in self.fragments)
            raise write_failure(self.output, exc, num_shards=num_shards, where=self.output.path, abort=self.abort) from exc
        except FormatError as exc:  # a later partition widened a type past what earlier values fit
            raise lossy_promotion(exc) from None

    def abort(self) -> None:
        """Remove every file of this run, those of partitions that never reported included; write nothing."""
        try:
            if self.output.held:  # not yet discarded
                self.output.adopt_leftovers(lambda name: partition_of_shard(name) is not None or name.startswith("fragment-"))
        finally:
            self.output.discard()


def finish_conversion(assembly: DatasetAssembly, job: PartitionJob, *, input_names: list[str]) -> DatasetIndex:
    """Check what all partitions together gave (fields named by --columns, rows at all), and write the dataset."""
    """Check what all partitions together gave, and write the dataset."""
    unknown = [name for name in job.columns or () if name not in assembly.input_fields]
    if unknown and assembly.input_fields:
        raise ConfigError(
            f"--columns names {', '.join(map(repr, unknown))}, which no input row has; "
            f"the inputs' fields are: {', '.join(assembly.input_fields)}"
        )
    if not assembly.fragments:
        skipped = assembly.num_skipped_rows
        raise ConvertError(
            f"the input ({', '.join(input_names)}) holds no rows"
            + (f" ({skipped:,} skipped as bad)" if skipped else "")
            + "; an empty dataset is not created"
        )
    dropped = assembly.dropped_columns
    for name in dropped:
        log.warning("field %r is null in every row and was left out of the dataset", name)
    return assembly.finish(
        source={"inputs": input_names, "dropped_columns": dropped},
        tokenizer=_tokenizer_record(resolve_tokenizer(job.tokenizer), job.text_field),
        options={"columns": list(job.columns) if job.columns else None, "text_field": job.text_field, "keep_text": job.keep_text, "on_error": job.on_error},
        created_by=f"fastload {_version()}",
    )


def _tokenizer_record(tokenizer, text_field: str) -> dict | None:
    if tokenizer is None:
        return None
    return {
        "column": TOKENS_COLUMN,
        "text_field": text_field,
        "fingerprint": tokenizer.fingerprint,
        "vocab_size": int(tokenizer.vocab_size),
        "eos_id": tokenizer.eos_id,
        "bos_id": tokenizer.bos_id,
    }


@functools.lru_cache(maxsize=1)
def _version() -> str:
    """fastload's installed version, looked up once per process: importlib.metadata scans the
    environment's distributions on every call, 1-2 ms of each conversion's serial tail (measured)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastload")
    except PackageNotFoundError:
        return "unknown"

