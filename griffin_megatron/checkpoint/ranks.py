"""The few collective steps a checkpoint save needs: which rank this is, waiting for every rank,
and handing rank 0's value to all of them (each a no-op in a single process)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(value):
    """Rank 0's value on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_path(path: Optional[Path]) -> Path:
    return Path(broadcast_object(str(path) if path is not None else None))
