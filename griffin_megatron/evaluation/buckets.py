"""Loss summed by log-spaced position buckets.

A target's position is the number of tokens of its own document before it (the context the
model had). Buckets are [0, 128), [128, 512), [512, 2048), ... (first edge and growth factor
configurable), the last one ending at the longest position evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
from torch import Tensor

from ..errors import ConfigError


def log_spaced_edges(max_position: int, first: int = 128, factor: int = 4) -> List[int]:
    """[0, first, first * factor, ...] up to and including max_position (> 0)."""
    if first < 1 or factor < 2:
        raise ConfigError(
            f"bucket edges need first >= 1 and factor >= 2 (got first={first}, factor={factor})."
        )
    edges = [0]
    edge = first
    while edge < max_position:
        edges.append(edge)
        edge *= factor
    edges.append(max_position)
    return edges


@dataclass
class PositionBuckets:
    """Running sums of loss and target counts per bucket (float64, so a million tokens add up
    without rounding drift)."""

    edges: List[int]
    loss_sums: Tensor = field(init=False)
    counts: Tensor = field(init=False)

    def __post_init__(self):
        self.loss_sums = torch.zeros(len(self.edges) - 1, dtype=torch.float64)
        self.counts = torch.zeros(len(self.edges) - 1, dtype=torch.int64)

    def add(self, positions: Tensor, losses: Tensor) -> None:
        """positions, losses: same shape; position >= edges[-1] goes into the last bucket."""
        positions = positions.reshape(-1).to("cpu", torch.long)
        losses = losses.reshape(-1).to("cpu", torch.float64)
        inner = torch.tensor(self.edges[1:-1], dtype=torch.long)
        index = torch.bucketize(positions, inner, right=True)
        self.loss_sums.index_add_(0, index, losses)
        self.counts.index_add_(0, index, torch.ones_like(index))

    @property
    def total_tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def mean_loss(self) -> float:
        return float(self.loss_sums.sum() / max(self.total_tokens, 1))

    def rows(self) -> List[dict]:
        """One dict per bucket: start, end (exclusive), tokens, loss (None when empty)."""
        rows = []
        for i, (start, end) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            count = int(self.counts[i])
            loss = float(self.loss_sums[i] / count) if count else None
            rows.append({"start": start, "end": end, "tokens": count, "loss": loss})
        return rows
