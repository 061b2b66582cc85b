"""One generation step (one token per row) through a GriffinModel, without Megatron's per-layer
framework overhead.

On a CPU a one-token step through TransformerLayer and Megatron's parallel linears spends most
of its time outside arithmetic: autograd Functions, autocast decorators, tensor-parallel
mappings and input validation wrap every small op. This step runs the same parameters with
`F.linear` and `F.rms_norm` with the (1 + w) gains computed once, and reuses the model's own
pieces for the rest: the embedding (with its scaling hook), `RecurrentBlock.temporal_mix` (whose
Conv1D and RG-LRU take their one-token forms for a cached step), Megatron's QKV split and RoPE,
and `LocalWindowedAttention`. Tests hold it to the full forward.
Row-parallel outputs are all-reduced over the tensor-parallel group, as RowParallelLinear does;
the bias is added after the residual branch sum as Megatron's bias-dropout-add does (dropout is
off when generating). Weights are read when the step is built: build a new one after changing
them (`generate` builds one per call).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region
from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb
from torch import Tensor

from ..inference_cache import GriffinInferenceCache
from ..model import soft_cap_logits
from ..modules.local_attention import LocalWindowedAttention
from ..modules.norm import GriffinRMSNorm
from ..modules.recurrent_block import RecurrentBlock
from ..sequence import build_sequence_params, rotary_frequencies


def _is_local_layer(layer) -> bool:
    norms = (layer.input_layernorm, layer.pre_mlp_layernorm)
    if not all(isinstance(norm, GriffinRMSNorm) for norm in norms):
        return False
    mixer = layer.self_attention
    return isinstance(mixer, RecurrentBlock) or isinstance(
        getattr(mixer, "core_attention", None), LocalWindowedAttention
    )


class DecodeStep:
    """Callable `(tokens [B, 1], position_ids [B, 1], cache) -> logits [B, 1, V(/tp)]`."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.layers = list(model.decoder.layers)
        tp = parallel_state.get_tensor_model_parallel_world_size()
        self.tp_group = parallel_state.get_tensor_model_parallel_group() if tp > 1 else None
        self.rotary_dim = int(self.config.kv_channels * self.config.rotary_percent)
        self.has_attention = any(not isinstance(l.self_attention, RecurrentBlock) for l in self.layers)
        # RMSNorm gains (1 + w) in fp32, by norm module.
        norms = [n for l in self.layers for n in (l.input_layernorm, l.pre_mlp_layernorm)]
        norms.append(model.decoder.final_layernorm)
        self.gains = {id(n): 1.0 + n.weight.detach().float() for n in norms}

    @staticmethod
    def supports(model) -> bool:
        """True for a whole local-backend model (one pipeline stage) without sequence parallelism."""
        return (
            model.pre_process
            and model.post_process
            and not model.config.sequence_parallel
            and getattr(model, "backend", None) == "local"
            and all(_is_local_layer(layer) for layer in model.decoder.layers)
        )

    def __call__(self, tokens: Tensor, position_ids: Tensor, *, cache: GriffinInferenceCache) -> Tensor:
        batch = tokens.shape[0]
        seq = build_sequence_params(1, batch, tokens.device, position_ids, None, cache)
        hidden = self.model.embedding(input_ids=tokens, position_ids=position_ids)  # [1, B, D]
        freqs = None
        if self.has_attention:
            freqs = rotary_frequencies(seq.positions, self.rotary_dim, self.config.rotary_base)
        for layer in self.layers:
            hidden = self._temporal_block(layer, hidden, seq, freqs)
            hidden = self._mlp(layer, hidden)
        hidden = self._norm(self.model.decoder.final_layernorm, hidden)
        logits = F.linear(hidden, self.model.shared_embedding_or_output_weight())
        if self.config.logits_soft_cap is not None:
            logits = soft_cap_logits(logits, self.config.logits_soft_cap)
        if self.tp_group is not None and not self.model.parallel_output:
            logits = gather_from_tensor_model_parallel_region(logits)  # as output_layer would
        cache.advance(seq.tokens_since_start)
        return logits.transpose(0, 1)  # [B, 1, V / tp]

    def _norm(self, norm: GriffinRMSNorm, x: Tensor) -> Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.eps)
        return (normed * self.gains[id(norm)]).to(x.dtype)

    def _row_parallel(self, x: Tensor, linear, residual: Tensor) -> Tensor:
        """residual + (x @ W^T summed over ranks + bias)."""
        out = F.linear(x, linear.weight)
        if self.tp_group is not None:
            dist.all_reduce(out, group=self.tp_group)
        if linear.bias is not None:
            out = out + linear.bias
        return residual + out

    def _temporal_block(self, layer, hidden: Tensor, seq, freqs) -> Tensor:
        x = self._norm(layer.input_layernorm, hidden)
        block = layer.self_attention
        if isinstance(block, RecurrentBlock):
            xy = F.linear(x, block.linear_in.weight, block.linear_in.bias)
            return self._row_parallel(block.temporal_mix(xy, seq), block.linear_out, hidden)
        query, key, value = block.get_query_key_value_tensors(x)  # [1, B, H, d]
        query = apply_rotary_pos_emb(query, freqs, config=self.config)
        key = apply_rotary_pos_emb(key, freqs, config=self.config)
        context = block.core_attention(query, key, value, None, packed_seq_params=seq)
        return self._row_parallel(context, block.linear_proj, hidden)

    def _mlp(self, layer, hidden: Tensor) -> Tensor:
        x = self._norm(layer.pre_mlp_layernorm, hidden)
        mlp = layer.mlp
        gate, up = F.linear(x, mlp.linear_fc1.weight, mlp.linear_fc1.bias).chunk(2, dim=-1)
        return self._row_parallel(self.config.activation_func(gate) * up, mlp.linear_fc2, hidden)
