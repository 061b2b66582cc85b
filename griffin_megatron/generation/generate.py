"""Batched generation from token ids with the fixed-size Griffin cache.

Prompts of different lengths are left-padded into one [B, L] batch. Each row's position ids
restart at 0 at its first real token, which is a document start: the padding never reaches the
prompt through the Conv1D taps, the RG-LRU state or the attention window (pads are one-token
documents at position 0). The prompt is prefilled (optionally in chunks, each continuing from
the cache), then every step feeds one token per row.

Tensor parallelism: every rank runs the same loop on the same prompts; vocab-parallel logits
are gathered, and the token chosen on the first rank of the tensor-parallel group is broadcast
so all ranks feed the same tokens (even when sampling).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region
from torch import Tensor

from ..errors import ConfigError
from .cache import GriffinInferenceCache
from ..modules.rglru import warm_up_kernels
from .forward import check_generation_model, decode_step, forward_with_cache
from .sampling import SamplingParams, sample_next_token

PAD_ID = 0  # any valid id: padding is cut off from the prompt by the document start


def _unwrap(model):
    """The GriffinModel inside DDP / Float16Module style wrappers."""
    while hasattr(model, "module") and not hasattr(model, "decoder"):
        model = model.module
    return model


def _check_prompts(prompts, vocab_size: int) -> List[List[int]]:
    if isinstance(prompts, Tensor) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise ConfigError(
            "prompts must be a non-empty list of token-id lists, e.g. [[2, 651, 6037]]."
        )
    checked = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, int):
            raise ConfigError(
                "prompts must be a list of token-id lists; wrap a single prompt as [token_ids]."
            )
        ids = [int(t) for t in prompt]
        if not ids:
            raise ConfigError(
                f"prompt {i} is empty; generation needs at least one token to condition on "
                "(e.g. the tokenizer's BOS token)."
            )
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise ConfigError(
                f"prompt {i} holds token id {bad[0]}, outside the model's vocabulary "
                f"[0, {vocab_size}); use the tokenizer the model was trained with."
            )
        checked.append(ids)
    return checked


def _eos_set(eos: Union[None, int, Iterable[int]]) -> List[int]:
    if eos is None:
        return []
    if isinstance(eos, int):
        return [eos]
    return [int(t) for t in eos]


def left_pad(prompts: Sequence[Sequence[int]], device) -> tuple:
    """Token ids and position ids [B, L] with prompts right-aligned; pads sit at position 0."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), PAD_ID, dtype=torch.long)
    positions = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, length - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        positions[row, length - len(prompt):] = torch.arange(len(prompt))
    return ids.to(device), positions.to(device)


def _full_vocab_logits(model, logits: Tensor) -> Tensor:
    """[B, 1, V / tp] on each rank -> [B, V] (identical on every rank of the group)."""
    if parallel_state.get_tensor_model_parallel_world_size() > 1 and model.parallel_output:
        logits = gather_from_tensor_model_parallel_region(logits)
    return logits[:, -1]


def _same_on_all_ranks(tokens: Tensor) -> Tensor:
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        dist.broadcast(
            tokens,
            src=parallel_state.get_tensor_model_parallel_src_rank(),
            group=parallel_state.get_tensor_model_parallel_group(),
        )
    return tokens


def stream_generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos: Union[None, int, Iterable[int]] = None,
    *,
    seed: Optional[int] = None,
    prefill_chunk_size: Optional[int] = None,
    cache: Optional[GriffinInferenceCache] = None,
) -> Iterator[List[Optional[int]]]:
    """Yield, step by step, the new token of every row (None once a row has produced `eos`).

    Arguments as in `generate`. Stops after max_new_tokens steps or when every row has ended.
    """
    model = _unwrap(model)
    check_generation_model(model)
    params = SamplingParams(temperature, top_k, top_p)
    prompts = _check_prompts(prompts, model.config.vocab_size)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens} must be a positive integer.")
    if prefill_chunk_size is not None and prefill_chunk_size < 1:
        raise ConfigError(f"prefill_chunk_size={prefill_chunk_size} must be a positive integer.")
    eos_ids = _eos_set(eos)

    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    ids, positions = left_pad(prompts, device)
    batch, length = ids.shape
    chunk = prefill_chunk_size or length
    if cache is None:
        cache = GriffinInferenceCache(batch, device=device, max_length=length + max_new_tokens)
    elif cache.has_history or cache.batch_size != batch:
        raise ConfigError(
            f"cache must be a fresh GriffinInferenceCache for {batch} prompts (got one for "
            f"{cache.batch_size} that has seen {cache.seen_tokens} tokens); create a new one."
        )
    eos_tensor = torch.tensor(eos_ids, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)

    # Compile and tune the RG-LRU kernels for the prefill chunks before the first forward: no
    # step times kernels (a no-op on a CPU; one-token decode steps do not use the kernels).
    warm_up_kernels(model, batch, chunk, backward=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, length, chunk):
                end = min(start + chunk, length)
                logits = forward_with_cache(model, ids[:, start:end], positions[:, start:end],
                                            cache, last_token_only=True)
        next_positions = positions[:, -1:] + 1  # [B, 1]
        for step in range(max_new_tokens):
            with torch.inference_mode():
                tokens = sample_next_token(_full_vocab_logits(model, logits), params, generator)
                tokens = _same_on_all_ranks(tokens.masked_fill(finished, PAD_ID))
                was_finished = finished.tolist()
                finished = finished | torch.isin(tokens, eos_tensor)
            yield [None if done else token for done, token in zip(was_finished, tokens.tolist())]
            if step + 1 == max_new_tokens or bool(finished.all()):
                return
            with torch.inference_mode():
                logits = decode_step(model, tokens.unsqueeze(1), next_positions, cache)
                next_positions = next_positions + 1
    finally:
        model.train(was_training)


def generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos: Union[None, int, Iterable[int]] = None,
    *,
    seed: Optional[int] = None,
    prefill_chunk_size: Optional[int] = None,
    cache: Optional[GriffinInferenceCache] = None,
    stream: Optional[Callable[[List[Optional[int]]], None]] = None,
) -> List[List[int]]:
    """Continue each prompt; returns the new tokens of every row (ending with `eos` if produced).

    Args:
        model: a GriffinModel (tensor-parallel ranks all call this with the same prompts).
        prompts: token-id lists, any lengths (left-padded into one batch).
        max_new_tokens: tokens to generate per row at most.
        temperature: 0 for greedy decoding, else the softmax temperature.
        top_k: sample among the k most likely tokens (0: all).
        top_p: sample among the most likely tokens holding probability top_p (1: all).
        eos: token id(s) that end a row.
        seed: seeds the sampling generator (None: torch's global generator).
        prefill_chunk_size: prefill long prompts in chunks of this many tokens (bounds memory).
        cache: a fresh GriffinInferenceCache to fill, e.g. to inspect its size afterwards
            (default: one sized to the longest prompt plus max_new_tokens).
        stream: called after every step with the new token per row (None for ended rows).
    """
    outputs: List[List[int]] = [[] for _ in prompts] if isinstance(prompts, (list, tuple)) else []
    for step_tokens in stream_generate(
        model, prompts, max_new_tokens, temperature, top_k, top_p, eos,
        seed=seed, prefill_chunk_size=prefill_chunk_size, cache=cache,
    ):
        for row, token in enumerate(step_tokens):
            if token is not None:
                outputs[row].append(token)
        if stream is not None:
            stream(step_tokens)
    return outputs
