"""The model's forward with a generation cache, through each layer's own cached forms.

- `forward_with_cache(model, input_ids, position_ids, cache)`: a chunk of T >= 1 tokens per row
  continuing from `cache` (a prompt, a later part of it, or any continuation), updating it, and
  returning the logits. Each layer runs its `prefill`.
- `decode_step(model, tokens, position_ids, cache)`: one new token per row, the generation loop's
  step. Each layer runs its `step` (the one-token Conv1D, RG-LRU, ring attention and linears).

Both run GPTModel's embedding, then each decoder layer's own `prefill` / `step` with that layer's
state in the cache (GriffinLayer, modules/griffin_layer.py: the residual wiring lives there,
written once), then the final norm and GPTModel's output layer (with the soft-cap hook;
`GriffinModel.output_step` for one token). The cache reaches the layers as an explicit
argument, never through Megatron's forward.
"""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor

from ..errors import ConfigError
from ..sequence import GriffinSequenceParams, build_sequence_params, next_token_params, rotary_frequencies
from .cache import GriffinInferenceCache


def check_generation_model(model) -> None:
    """The model must hold the whole depth and see whole sequences (no sequence parallelism)."""
    if not (model.pre_process and model.post_process):
        raise ConfigError(
            "generation needs pipeline-parallel size 1 (every rank must hold the whole "
            "depth); load the checkpoint with pipeline_model_parallel_size=1."
        )
    if model.config.sequence_parallel:
        raise ConfigError(
            "generation feeds one token per step, which sequence parallelism cannot split; "
            "build the model with sequence_parallel=False."
        )
    if model.config.context_parallel_size > 1:
        raise ConfigError(
            "context parallelism is for training on sequences one device cannot hold; generate "
            "and evaluate with context_parallel_size=1 (the cache carries whole sequences)."
        )


def _run(model, input_ids: Tensor, position_ids: Tensor, seq: GriffinSequenceParams,
         cache: GriffinInferenceCache, layer_call: Callable, output_call: Callable,
         last_token_only: bool) -> Tensor:
    """layer_call(layer, hidden, state, seq, rotary): the layer's `prefill` or `step`
    (GriffinLayer, modules/griffin_layer.py)."""
    config = model.config
    hidden = model.embedding(input_ids=input_ids, position_ids=position_ids)  # [T, B, D]
    rotary = None
    if model.stage_has_attention:
        rotary_dim = int(config.kv_channels * config.rotary_percent)
        rotary = rotary_frequencies(seq.positions, rotary_dim, config.rotary_base)
    batch = input_ids.shape[0]
    for layer in model.decoder.layers:
        state = cache.layer_state(layer.layer_number, lambda: layer.allocate_inference_cache(
            batch, cache.max_length, hidden.dtype, hidden.device))
        hidden = layer_call(layer, hidden, state, seq, rotary)
    hidden = model.decoder.final_layernorm(hidden)
    if last_token_only:
        hidden = hidden[-1:]
    logits = output_call(hidden)
    cache.advance(seq.tokens_since_start)
    return logits.transpose(0, 1)  # [B, T, V(/tp)]


def forward_with_cache(
    model,
    input_ids: Tensor,
    position_ids: Optional[Tensor],
    cache: GriffinInferenceCache,
    *,
    last_token_only: bool = False,
) -> Tensor:
    """Run a chunk of tokens through a GriffinModel, continuing from `cache` and updating it.

    Args:
        model: a GriffinModel holding the whole depth (pipeline-parallel size 1), without
            sequence parallelism; call it under torch.inference_mode() (or no_grad).
        input_ids: [B, T] token ids, T >= 1, B = cache.batch_size.
        position_ids: [B, T] positions restarting at 0 where a document starts (None: the chunk
            continues the cached documents, or starts one when the cache is fresh).
        cache: a GriffinInferenceCache; a fresh one starts new sequences.
        last_token_only: return the logits of the chunk's last token only (a long prompt's
            [B, T, V] logits would dwarf the model).

    Returns:
        logits [B, T (or 1), V / tp] (the full vocabulary when the model's parallel_output is
        False), soft-capped as the model's forward returns them. Feeding a sequence in any
        chunks gives the logits of one uncached forward over it.
    """
    check_generation_model(model)
    batch, length = input_ids.shape
    if batch != cache.batch_size:
        raise ConfigError(
            f"input_ids hold {batch} rows but the cache was made for {cache.batch_size}; create "
            f"GriffinInferenceCache({batch}) for this batch."
        )
    cache.check_room(length)
    seq = build_sequence_params(length, batch, input_ids.device, position_ids,
                                carried_tokens_since_start=cache.carried_tokens_since_start())
    # The attention rings hold the last min(seen, W) keys, which precede the chunk's own.
    seq = model.with_attention_mask(
        seq, input_ids.device, min(cache.seen_tokens, model.config.attention_window))
    return _run(model, input_ids, position_ids, seq, cache,
                lambda layer, *args: layer.prefill(*args),
                lambda hidden: model.output_layer(
                    hidden, weight=model.shared_embedding_or_output_weight())[0],
                last_token_only)


def decode_step(model, tokens: Tensor, position_ids: Tensor, cache: GriffinInferenceCache) -> Tensor:
    """One new token per row after the cached ones: tokens, position_ids [B, 1] -> logits
    [B, 1, V / tp]. The same result as forward_with_cache on a one-token chunk, through each
    layer's one-token `step`; the cache must already hold a prefix (call forward_with_cache
    first)."""
    carried = cache.carried_tokens_since_start()
    if carried is None:
        raise ConfigError("decode_step continues a cached sequence; run the prompt through "
                          "forward_with_cache first.")
    cache.check_room(1)
    seq = next_token_params(position_ids, carried)
    return _run(model, tokens, position_ids, seq, cache,
                lambda layer, *args: layer.step(*args), model.output_step,
                last_token_only=False)
