"""The two Griffin temporal blocks on a context-parallel shard.

`recurrent_mix` replaces the Conv1D + RG-LRU of a RecurrentBlock, `windowed_attention` the core
attention of LocalWindowedAttention, when the sequence params describe a shard (shards.py). Both
compute what the unsplit sequence would give on these tokens, using the block's own parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..modules.blocked_attention import local_attention
from ..modules.conv1d import causal_depthwise_conv1d
from ..modules.flex_attention import flex_local_attention
from ..sequence import GriffinSequenceParams
from .halo import conv_halo, key_value_halo
from .rglru_scan import rglru_across_ranks


def recurrent_mix(conv, rg_lru, x: Tensor, seq: GriffinSequenceParams) -> Tensor:
    """Conv1D (with the K - 1 inputs before the shard) then the RG-LRU (with the state carried
    in from earlier ranks): x [T/C, B, W/tp] -> [T/C, B, W/tp]."""
    shard = seq.context_parallel
    taps = conv_halo(x, conv.width, shard)
    x, _ = causal_depthwise_conv1d(x, conv.weight, conv.bias, seq.tokens_since_start, taps)
    gate_x, gate_a = rg_lru.gate_preactivations(x)
    return rglru_across_ranks(
        x, gate_x, gate_a, rg_lru.recurrent_param, reset=seq.reset, shard=shard,
        backend=rg_lru.config.rglru_backend, c=rg_lru.config.rglru_c,
    )


def windowed_attention(query: Tensor, key: Tensor, value: Tensor, *, window: int, scale: float,
                       seq: GriffinSequenceParams) -> Tensor:
    """Local attention of the shard's queries [T/C, B, Hq, d] over the W - 1 keys and values
    before the shard and the shard's own -> [T/C, B, Hq, d]; through FlexAttention when the
    sequence params carry its mask (built for the halo's length, `halo_length`)."""
    past_keys, past_values = key_value_halo(key, value, window, seq.context_parallel)
    keys, values = torch.cat([past_keys, key]), torch.cat([past_values, value])
    if seq.flex_mask is not None:
        return flex_local_attention(query, keys, values, seq.flex_mask, scale=scale)
    return local_attention(
        query, keys, values, window=window, scale=scale,
        tokens_since_start=seq.tokens_since_start, num_past=past_keys.shape[0],
    )
