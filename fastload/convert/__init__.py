"""`fastload convert`: any common input to a fastload dataset, in parallel.

`sources` (find inputs, cut them into chunks) → `parse` (chunk → Arrow) →
`normalize` (columns, tokenization, storage types) → `pipeline` (threads,
schema reconciliation, the writer, the progress bar).
"""

from fastload.convert.pipeline import ConvertResult, convert

__all__ = ["convert", "ConvertResult"]
