"""Griffin's residual block: a Megatron-Core TransformerLayer that owns its generation step.

    h = x + temporal_block(input_layernorm(x))      (bias-dropout-add)
    out = h + mlp(pre_mlp_layernorm(h))             (bias-dropout-add)

The temporal block (recurrent or local attention) sits in the `self_attention` slot. `forward`
is Megatron's TransformerLayer.forward, unchanged: training, evaluation and every uncached
forward run it, with its recompute, offloading and CUDA-graph machinery. Generation continues a
cache, for which Megatron's forward has no slot (its `inference_context` belongs to Megatron's
own inference engine), so the layer also has, as mamba_ssm's `Block` does, its cache and its
cached forms:
- `allocate_inference_cache`: the state its temporal block carries between calls;
- `prefill`: a chunk of tokens continuing from that state (each module's forward);
- `step`: one token per row (each module's one-token `step`, modules/parallel_linear.py).
Both run the residual wiring above from one method, `_residual_block`, in Megatron's order and
with the layer's own norms, bias-dropout-adds and MLP; tests/model/test_step_and_layout.py holds
them to `forward`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from megatron.core.transformer.transformer_layer import TransformerLayer
from torch import Tensor

from ..sequence import GriffinSequenceParams


class GriffinLayer(TransformerLayer):
    """TransformerLayer with the generation entry points of Griffin's residual block."""

    def allocate_inference_cache(
        self, batch_size: int, max_length: Optional[int], dtype: torch.dtype, device
    ) -> Any:
        """Empty generation state for batch_size rows: the temporal block's own (a
        RecurrentBlockState or a KVRing)."""
        return self.self_attention.allocate_inference_cache(batch_size, max_length, dtype, device)

    def prefill(self, hidden_states: Tensor, state: Any, seq: GriffinSequenceParams,
                rotary_pos_emb: Optional[Tensor] = None) -> Tensor:
        """A chunk [T, B, D] continuing from `state` (updated in place) -> [T, B, D], what
        forward returns for those tokens after the cached ones."""
        return self._residual_block(hidden_states, self.self_attention.prefill, self.mlp,
                                    state, seq, rotary_pos_emb)

    def step(self, hidden_states: Tensor, state: Any, seq: GriffinSequenceParams,
             rotary_pos_emb: Optional[Tensor] = None) -> Tensor:
        """One token per row [1, B, D] continuing from `state` (updated in place) -> [1, B, D]."""
        return self._residual_block(hidden_states, self.self_attention.step, self.mlp.step,
                                    state, seq, rotary_pos_emb)

    def _residual_block(self, hidden_states: Tensor, temporal: Callable, mlp: Callable,
                        state: Any, seq: GriffinSequenceParams,
                        rotary_pos_emb: Optional[Tensor]) -> Tensor:
        """TransformerLayer.forward's wiring with the cache's calls of the temporal block and
        the MLP, each returning (output, bias). A cache serves inference only: dropout off."""
        fusion = self.config.bias_dropout_fusion
        out = temporal(self.input_layernorm(hidden_states), state, seq, rotary_pos_emb)
        hidden_states = self.self_attn_bda(False, fusion)(out, hidden_states, self.hidden_dropout)
        out = mlp(self.pre_mlp_layernorm(hidden_states))
        return self.mlp_bda(False, fusion)(out, hidden_states, self.hidden_dropout)
