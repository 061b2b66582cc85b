"""Loss by position over many sequences: chunked per-token losses summed into buckets."""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

import numpy
import torch

from .buckets import PositionBuckets, log_spaced_edges
from .chunked import chunked_token_losses


def evaluate_sequences(
    model,
    sequences: Iterable[Tuple[numpy.ndarray, numpy.ndarray]],
    chunk_tokens: int,
    max_position: int,
    edges: Optional[List[int]] = None,
    on_sequence=None,
) -> PositionBuckets:
    """Bucketed loss of every target whose document has at least one token before it.

    A document's first token is not counted: it is predicted from the previous document's end
    of document token, with none of its own context (position 0).
    sequences: (ids [N], positions [N]) pairs, evaluated one at a time (batch 1).
    on_sequence(index, tokens): called after each sequence (progress).
    """
    buckets = PositionBuckets(edges or log_spaced_edges(max_position))
    for index, (ids, positions) in enumerate(sequences):
        ids, positions = ids[None], positions[None]  # [1, N]
        for start, losses in chunked_token_losses(model, ids, positions, chunk_tokens):
            end = start + losses.shape[1]
            target_positions = torch.from_numpy(numpy.ascontiguousarray(positions[:, start + 1:end + 1]))
            in_document = target_positions > 0
            buckets.add(target_positions[in_document], losses.cpu()[in_document])
        if on_sequence is not None:
            on_sequence(index, ids.shape[1])
    return buckets
