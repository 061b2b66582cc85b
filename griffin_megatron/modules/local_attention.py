"""Local (sliding-window) multi-query attention for the `local` backend, in plain PyTorch.

A query at position q sees the keys q - W < k <= q of its own document (HF's window meaning:
W keys, itself included). The cost grows with T x W, never T^2: the blocked kernel
(blocked_attention.py) cuts queries into blocks, each attending to the keys that can reach it.

`LocalWindowedAttention` is the core-attention module Megatron's SelfAttention calls after its
QKV projection and RoPE. When the sequence params carry a FlexAttention mask (the run setting
`local_attention_impl`, flex_attention.py) it runs FlexAttention instead of the blocks. For
generation it has `prefill` (a chunk continuing from a ring buffer of keys/values, `KVRing`) and
`step` (one token per row); `GriffinSelfAttention` (attention_block.py) calls them between its
own projections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.transformer.module import MegatronModule
from torch import Tensor

from ..config import GriffinConfig
from ..context_parallel.layers import windowed_attention
from ..errors import ConfigError
from ..sequence import GriffinSequenceParams
from .blocked_attention import local_attention
from .flex_attention import flex_local_attention
from .parallel_linear import ColumnParallelLinearWithStep


@dataclass
class KVRing:
    """An attention layer's generation state: the last S <= W keys and values.

    Head-major [B, Hkv, S, d] so that a decode step attends to the ring in place (contiguous for
    SDPA); slot = position % S.
    """

    keys: Tensor  # [B, Hkv, S, d]
    values: Tensor  # [B, Hkv, S, d]
    slot_positions: Tensor  # [S] long: absolute token index held by each slot, -1 if empty
    next_position: int = 0  # absolute index of the next token (tokens written so far)


class BiasFreeColumnParallelLinear(ColumnParallelLinearWithStep):
    """ColumnParallelLinear that never has a bias.

    RecurrentGemma's q/k/v projections have no bias while its output projection has one;
    Megatron's SelfAttention derives both from `add_bias_linear`, so the QKV slot of the spec
    uses this class to drop the bias.
    """

    def __init__(self, *args, bias: bool = False, **kwargs):
        super().__init__(*args, bias=False, **kwargs)


def ring_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: KVRing,
    tokens_since_start: Tensor,
    scale: float,
) -> Tensor:
    """One decode step: write the new key/value into the ring, then attend to the ring in place.

    The ring holds the last S <= W positions, so every filled slot is inside the window; a slot
    counts when it is inside the query's document. Softmax attention does not depend
    on key order once RoPE is applied, so the ring is never reordered or copied. Until the ring
    wraps, only its filled prefix is read. The query heads of each key/value group become the
    rows of one attention problem (no GQA expansion).
    q: [1, B, Hq, d]; k, v: [1, B, Hk, d]; tokens_since_start: [1, B]. Returns [1, B, Hq, d].
    """
    B, Hk, S, d = state.keys.shape
    Hq = q.shape[2]
    query_position = state.next_position
    state.next_position += 1
    slot = query_position % S
    state.keys[:, :, slot] = k[0].to(state.keys.dtype)
    state.values[:, :, slot] = v[0].to(state.values.dtype)
    state.slot_positions[slot] = query_position
    filled = min(S, query_position + 1)  # the ring fills slots 0, 1, ... before it wraps
    distance = query_position - state.slot_positions[:filled]
    allowed = distance.view(1, filled) <= tokens_since_start.view(B, 1)  # [B, filled]
    grouped_q = q[0].reshape(B, Hk, Hq // Hk, d).to(state.keys.dtype)  # [B, Hk, Hq / Hk, d]
    out = F.scaled_dot_product_attention(
        grouped_q,
        state.keys[:, :, :filled],
        state.values[:, :, :filled],
        attn_mask=allowed.view(B, 1, 1, filled),
        scale=scale,
    )
    return out.reshape(1, B, Hq, d).to(q.dtype)


def _write_ring(state: KVRing, k: Tensor, v: Tensor) -> None:
    """Store the last min(S, T) keys/values of a [T, B, Hk, d] chunk that starts at the ring's
    next position."""
    first_position = state.next_position
    state.next_position += k.shape[0]
    slots = state.slot_positions.shape[0]
    keep = min(slots, k.shape[0])
    positions = first_position + torch.arange(k.shape[0] - keep, k.shape[0], device=k.device)
    index = positions % slots
    state.keys.index_copy_(2, index, k[-keep:].permute(1, 2, 0, 3).to(state.keys.dtype))
    state.values.index_copy_(2, index, v[-keep:].permute(1, 2, 0, 3).to(state.values.dtype))
    state.slot_positions[index] = positions.to(state.slot_positions.device)


def _ring_in_order(state: KVRing, dtype: torch.dtype):
    """The keys and values held by the ring, oldest first, sequence-first: [P, B, Hk, d] each.

    They are the P positions just before the ring's next position, as `local_attention`'s
    num_past expects. Until the ring wraps, slots 0..next_position-1 hold exactly those, in order.
    """
    slots = state.slot_positions.shape[0]
    next_position = state.next_position
    if next_position <= slots:
        keys, values = state.keys[:, :, :next_position], state.values[:, :, :next_position]
    else:
        order = torch.argsort(state.slot_positions)
        keys, values = state.keys.index_select(2, order), state.values.index_select(2, order)
    return keys.permute(2, 0, 1, 3).to(dtype), values.permute(2, 0, 1, 3).to(dtype)


class LocalWindowedAttention(MegatronModule):
    """Core attention (after QKV projection and RoPE) with a sliding window and documents."""

    def __init__(
        self,
        config: GriffinConfig,
        layer_number: int,
        attn_mask_type=None,
        attention_type: str = "self",
        attention_dropout: Optional[float] = None,
        softmax_scale: Optional[float] = None,
        cp_comm_type: Optional[str] = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        self.layer_number = layer_number
        self.window = config.attention_window
        self.scale = softmax_scale if softmax_scale is not None else config.kv_channels**-0.5

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Optional[Tensor] = None,
        attn_mask_type=None,
        attention_bias: Optional[Tensor] = None,
        packed_seq_params: Optional[GriffinSequenceParams] = None,
    ) -> Tensor:
        """query [T, B, Hq, d], key/value [T, B, Hk, d] -> [T, B, Hq * d]."""
        seq = packed_seq_params
        if seq is not None and seq.context_parallel is not None:
            out = windowed_attention(
                query, key, value, window=self.window, scale=self.scale, seq=seq)
        elif seq is not None and seq.flex_mask is not None:
            out = flex_local_attention(query, key, value, seq.flex_mask, scale=self.scale)
        else:
            since = seq.tokens_since_start if seq is not None else None
            out = local_attention(query, key, value, window=self.window, scale=self.scale,
                                  tokens_since_start=since)
        T, B = out.shape[:2]
        return out.reshape(T, B, -1)

    def allocate_inference_cache(
        self, batch_size: int, max_length: Optional[int], kv_heads: int, head_dim: int, dtype, device
    ) -> KVRing:
        """An empty ring of min(window, max_length) slots (all of the window when max_length is
        None): a decode step never needs more."""
        slots = self.window if max_length is None else min(self.window, max_length)
        return KVRing(
            keys=torch.zeros(batch_size, kv_heads, slots, head_dim, dtype=dtype, device=device),
            values=torch.zeros(batch_size, kv_heads, slots, head_dim, dtype=dtype, device=device),
            slot_positions=torch.full((slots,), -1, dtype=torch.long, device=device),
        )

    def _check_room(self, ring: KVRing, num_tokens: int) -> None:
        slots = ring.slot_positions.shape[0]
        if slots < self.window and ring.next_position + num_tokens > slots:
            raise ConfigError(
                f"this cache was created with max_length={slots} tokens but would hold "
                f"{ring.next_position + num_tokens}; create it with a larger max_length "
                "(prompt length + new tokens)."
            )

    def prefill(self, query: Tensor, key: Tensor, value: Tensor, ring: KVRing,
                seq: GriffinSequenceParams) -> Tensor:
        """A chunk continuing from the ring (then written into it); shapes as forward."""
        self._check_room(ring, query.shape[0])
        since = seq.tokens_since_start
        keys, values = key, value
        if ring.next_position > 0:
            # Continuation prefill: the ring, ordered by position, precedes the chunk.
            past_keys, past_values = _ring_in_order(ring, key.dtype)
            keys = torch.cat([past_keys, key], dim=0)
            values = torch.cat([past_values, value], dim=0)
        num_past = keys.shape[0] - key.shape[0]
        if seq.flex_mask is not None:
            out = flex_local_attention(query, keys, values, seq.flex_mask, scale=self.scale)
        else:
            out = local_attention(query, keys, values, window=self.window, scale=self.scale,
                                  tokens_since_start=since, num_past=num_past)
        _write_ring(ring, key, value)
        T, B = out.shape[:2]
        return out.reshape(T, B, -1)

    def step(self, query: Tensor, key: Tensor, value: Tensor, ring: KVRing,
             seq: GriffinSequenceParams) -> Tensor:
        """One token per row: query [1, B, Hq, d], key/value [1, B, Hk, d] -> [1, B, Hq * d].

        Always SDPA over the ring, whichever implementation the forward uses: one query row
        per sequence against at most W keys is a matrix-vector product bound by reading the
        ring, which no tiled kernel speeds up, while a BlockMask per token would cost more to
        build than the attention; and the ring holds keys in slot order, not position order,
        which SDPA does not need but a position-based BlockMask would.
        """
        self._check_room(ring, 1)
        out = ring_attention_step(query, key, value, ring, seq.tokens_since_start, self.scale)
        return out.reshape(1, out.shape[1], -1)
