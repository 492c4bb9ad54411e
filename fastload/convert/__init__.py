"""`fastload convert`: any common input to a fastload dataset, in parallel.

`sources` (find inputs, cut them into chunks) → `partitions` (the input cut
into the units one task converts) → `partition_work` (a partition's chunks →
`parse` → `normalize` → threads → its own writer) → `merge` (the partitions'
fragments → one `index.json`) → `pipeline` (`convert()`: options, the engine,
the progress bar). The Ray engine is `fastload.ray`.
"""

from fastload.convert.pipeline import ConvertResult, convert

__all__ = ["convert", "ConvertResult"]
