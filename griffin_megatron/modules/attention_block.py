"""Griffin's local-attention block: Megatron's SelfAttention with explicit generation methods.

Training runs SelfAttention.forward unchanged (QKV projection, RoPE, core attention, output
projection). For generation its layer (GriffinLayer, griffin_layer.py) calls `prefill` for a
chunk of tokens and `step` for one token per row: the same projections and RoPE around the core
attention's own `prefill` / `step`, which read and write the layer's ring buffer of keys and
values (`KVRing`, made by `allocate_inference_cache`).
"""

from __future__ import annotations

from typing import Optional

import torch
from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb
from megatron.core.transformer.attention import SelfAttention
from torch import Tensor

from ..sequence import GriffinSequenceParams
from .local_attention import KVRing


class GriffinSelfAttention(SelfAttention):
    """SelfAttention whose core attention (LocalWindowedAttention, or the te backend's
    GriffinTEDotProductAttention) also has `prefill` and `step`."""

    def allocate_inference_cache(
        self, batch_size: int, max_length: Optional[int], dtype: torch.dtype, device
    ) -> KVRing:
        return self.core_attention.allocate_inference_cache(
            batch_size,
            max_length,
            self.num_query_groups_per_partition,
            self.hidden_size_per_attention_head,
            dtype,
            device,
        )

    def _projected(self, hidden_states: Tensor, rotary_pos_emb: Optional[Tensor]):
        query, key, value = self.get_query_key_value_tensors(hidden_states)  # [T, B, H, d]
        if rotary_pos_emb is not None:
            query = apply_rotary_pos_emb(query, rotary_pos_emb, config=self.config)
            key = apply_rotary_pos_emb(key, rotary_pos_emb, config=self.config)
        return query, key, value

    def prefill(self, hidden_states: Tensor, state: KVRing, seq: GriffinSequenceParams,
                rotary_pos_emb: Optional[Tensor] = None):
        """A chunk [T, B, D] continuing from the ring (updated) -> (output, bias) as forward."""
        query, key, value = self._projected(hidden_states, rotary_pos_emb)
        return self.linear_proj(self.core_attention.prefill(query, key, value, state, seq))

    def _step_query_key_value(self, hidden_states: Tensor):
        """get_query_key_value_tensors for one token, through linear_qkv's own `step`.

        Megatron's fused QKV output holds, per key/value group on this rank, the group's query
        heads, then its key, then its value head. When every rank owns whole groups that split
        is a view; with fewer groups than ranks (replicated key/value heads, which needs an
        all-gather and a slice) and with q/k norms Megatron's own method runs instead.
        """
        if (self.config.num_query_groups < self.world_size or self.q_layernorm is not None
                or self.k_layernorm is not None):
            return self.get_query_key_value_tensors(hidden_states)
        mixed, bias = self.linear_qkv.step(hidden_states)
        if bias is not None:
            mixed = mixed + bias
        groups, head_dim = self.num_query_groups_per_partition, self.hidden_size_per_attention_head
        per_group = self.num_attention_heads_per_partition // groups
        mixed = mixed.view(*mixed.shape[:-1], groups, (per_group + 2) * head_dim)
        query, key, value = torch.split(mixed, [per_group * head_dim, head_dim, head_dim], dim=3)
        return query.reshape(*query.shape[:2], -1, head_dim), key, value

    def step(self, hidden_states: Tensor, state: KVRing, seq: GriffinSequenceParams,
             rotary_pos_emb: Optional[Tensor] = None):
        """One token per row [1, B, D] continuing from the ring (updated) -> (output, bias)."""
        query, key, value = self._step_query_key_value(hidden_states)
        if rotary_pos_emb is not None:
            query = apply_rotary_pos_emb(query, rotary_pos_emb, config=self.config)
            key = apply_rotary_pos_emb(key, rotary_pos_emb, config=self.config)
        return self.linear_proj.step(self.core_attention.step(query, key, value, state, seq))
