"""Per-token losses of a long sequence, one chunk at a time, continuing from the cache.

Hawk and Griffin carry a fixed-size state between chunks (Conv1D taps, RG-LRU state, the last
`window` keys and values), so a sequence of any length is evaluated in the memory of one chunk
and gives the same losses as one forward over the whole sequence.

`forward_chunk` is the only code of the evaluation package that knows how the model continues
from a cache; everything else calls it.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy
import torch
from megatron.core import parallel_state
from megatron.core.tensor_parallel import vocab_parallel_cross_entropy
from torch import Tensor

from ..errors import ConfigError
from ..generation import GriffinInferenceCache, forward_with_cache


def forward_chunk(model, ids: Tensor, positions: Tensor, cache: Optional[object]) -> Tuple[Tensor, object]:
    """Logits [B, T, V / tp] of a chunk that continues the tokens already in `cache`.

    ids, positions: [B, T]; positions restart at 0 where a document starts.
    cache: what the previous call returned, or None for the first chunk of a batch.
    Returns (logits, cache to pass with the next chunk).
    """
    if cache is None:
        cache = GriffinInferenceCache(ids.shape[0], device=ids.device)
    return forward_with_cache(model, ids, positions, cache), cache


def unwrap_model(model):
    """The GriffinModel inside DDP / Float16Module style wrappers."""
    while hasattr(model, "module") and not hasattr(model, "decoder"):
        model = model.module
    return model


def check_layout(model) -> None:
    """Every rank must hold the whole depth, and a chunk's tokens must not be split."""
    if (parallel_state.model_parallel_is_initialized()
            and parallel_state.get_pipeline_model_parallel_world_size() > 1):
        raise ConfigError(
            "evaluation needs pipeline-parallel size 1 (each chunk continues from the previous "
            "one's state in every layer); load the checkpoint with tensor parallelism only."
        )
    if unwrap_model(model).config.sequence_parallel:
        raise ConfigError(
            "evaluation continues chunk by chunk, which sequence parallelism cannot split; build "
            "the model with sequence_parallel=False."
        )


def token_losses_from_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """-log p(target) [B, T] in fp32 from vocab-parallel logits [B, T, V / tp]."""
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        return vocab_parallel_cross_entropy(logits.float(), targets)
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), reduction="none"
    ).view(targets.shape)


def chunked_logits(model, ids, positions, chunk_tokens: int,
                   length: Optional[int] = None) -> Iterator[Tuple[int, Tensor]]:
    """Yield (start, logits [B, T, V / tp]) for ids[:, start:start + T], chunk by chunk, each
    chunk continuing from the state the previous ones left.

    ids, positions: [B, N] integer arrays (torch tensors, numpy arrays or memory maps: only
        slices [:, start:end] are read, so only one chunk is ever copied into a tensor);
        positions restart at 0 per document.
    chunk_tokens: tokens fed per forward (bounds the activation and logit memory).
    length: feed only the first `length` tokens (default N).
    """
    if not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ConfigError(f"chunk_tokens={chunk_tokens} must be a positive number of tokens.")
    model = unwrap_model(model)
    check_layout(model)
    device = next(model.parameters()).device
    cache = None
    was_training = model.training
    model.eval()
    try:
        length = ids.shape[1] if length is None else length
        for start in range(0, length, chunk_tokens):
            end = min(start + chunk_tokens, length)
            chunk_ids = _as_tensor(ids[:, start:end], device)
            chunk_positions = _as_tensor(positions[:, start:end], device)
            # Entered per chunk, not around the loop: the caller runs between yields.
            with torch.inference_mode():
                logits, cache = forward_chunk(model, chunk_ids, chunk_positions, cache)
            yield start, logits
    finally:
        model.train(was_training)


def chunked_token_losses(model, ids, positions, chunk_tokens: int) -> Iterator[Tuple[int, Tensor]]:
    """Yield (start, losses [B, T]) chunk by chunk: losses[:, i] is -log p(ids[:, start + i + 1]
    | everything before it), for every target of the sequence (N - 1 of them).

    Arguments as in `chunked_logits`.
    """
    for start, logits in chunked_logits(model, ids, positions, chunk_tokens, ids.shape[1] - 1):
        targets = _as_tensor(ids[:, start + 1:start + 1 + logits.shape[1]], logits.device)
        with torch.inference_mode():
            losses = token_losses_from_logits(logits, targets)
        yield start, losses


def _as_tensor(values, device) -> Tensor:
    if isinstance(values, numpy.ndarray):
        values = torch.from_numpy(numpy.ascontiguousarray(values, dtype=numpy.int64))
    return values.to(device=device, dtype=torch.long)
