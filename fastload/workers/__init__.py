"""Worker processes for `fastload.DataLoader`.

`protocol` (the NOTE and the message names) → `codec` (batch ↔ skeleton +
shared-memory leaves) → `collate` (torch's default_collate into a slot) →
`loop` (the worker process). The main-process side lives in `loader.py`.
"""

from torch.utils.data import get_worker_info

__all__ = ["get_worker_info"]
