"""Distributed data parallel under `torchrun`: the process group, the device, and reductions.

    torchrun --nproc_per_node 2 -m fastload.cli train demo/corpus --config tiny

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
`setup_distributed` starts the process group from them (nccl when training
on CUDA, gloo on CPU) before the DataLoader is built, so that
`fastload.DataLoader` sees the rank and world size and hands each rank its
disjoint share of every global batch, with the same number of batches on
every rank. A process group someone else started is used as it is and left
for them to end. Without those variables the run is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fastload.errors import ConfigError

__all__ = ["Distributed", "setup_distributed", "pick_device"]


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # we started the process group, so we end it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """`value` averaged over the ranks (itself in a single process)."""
        if not self.enabled:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def gather_objects(self, obj) -> list:
        """Every rank's `obj`, in rank order."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """"auto": the local rank's GPU if CUDA is available, else the CPU; or the device named."""
    if requested == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(f"device {requested!r} is not a torch device ({exc}); use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {requested!r} asked for CUDA, but torch sees no GPU; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup_distributed(requested_device: str) -> Distributed:
    """The process group from torchrun's environment (or the one already started), and this rank's device."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        return Distributed(rank, world, local_rank, _bind(pick_device(requested_device, local_rank)), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(0, 1, 0, _bind(pick_device(requested_device)), owns_group=False)
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world} asks for distributed training, but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _bind(pick_device(requested_device, local_rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, device, owns_group=True)


def _bind(device: torch.device) -> torch.device:
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before any CUDA work: nccl and pinned copies go to this GPU
    return device
