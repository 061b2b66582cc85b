"""The Transformer baseline of the throughput benchmark: a Megatron-Core GPTModel.

Same residual blocks as Griffin (RMSNorm, GeGLU-tanh MLP, tied embedding) but global causal
multi-query attention (one key/value head, as Griffin's local attention) with RoPE in every
layer. `mqa_matched_to(config)` gives it Griffin's width, depth, heads, head dimension and
vocabulary, and the MLP width that makes its parameter count Griffin's (within one MLP step of
64 channels per layer). Megatron-Core's local DotProductAttention materialises the T x T scores;
the baseline uses PyTorch's fused SDPA instead (causal, no mask, `enable_gqa`: the flash kernel
on a GPU, which takes grouped key/value heads), so it is as fast as a Transformer gets without TE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Dict

import torch
import torch.nn.functional as F
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from griffin_megatron.config import gelu_tanh
from griffin_megatron.flops import gpt_forward_flops


class CausalSDPAttention(MegatronModule):
    """Core attention for Megatron's SelfAttention: causal SDPA over [s, b, h, d]."""

    def __init__(self, config, layer_number, attn_mask_type=None, attention_type="self",
                 attention_dropout=None, softmax_scale=None, cp_comm_type=None, pg_collection=None):
        super().__init__(config=config)
        self.scale = softmax_scale

    def forward(self, query, key, value, attention_mask=None, attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, h, s, d]
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale, enable_gqa=q.shape[1] != k.shape[1]
        )
        s, b = query.shape[:2]
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)


@dataclass(frozen=True)
class GPTShape:
    hidden_size: int = 1536
    num_layers: int = 12
    num_attention_heads: int = 12
    num_query_groups: int = 12
    kv_channels: int = 128
    ffn_hidden_size: int = 4608  # per GeGLU branch
    vocab_size: int = 16384

    def forward_flops(self, seq_length: int) -> Dict[str, int]:
        return gpt_forward_flops(**asdict(self), gated_linear_unit=True, seq_length=seq_length)

    def parameters(self) -> int:
        """Parameters of build_gpt's model (no biases, tied output layer)."""
        d, heads, dh = self.hidden_size, self.num_attention_heads, self.kv_channels
        attention = d * dh * (heads + 2 * self.num_query_groups) + heads * dh * d
        mlp = 3 * d * self.ffn_hidden_size
        return self.vocab_size * d + d + self.num_layers * (2 * d + attention + mlp)


def mqa_matched_to(config, multiple: int = 64) -> GPTShape:
    """An MQA GPT with Griffin's width, depth, heads and vocabulary, and the MLP width (a
    multiple of `multiple`) that brings its parameters nearest Griffin's."""
    from griffin_megatron.presets import count_parameters

    base = GPTShape(hidden_size=config.hidden_size, num_layers=config.num_layers,
                    num_attention_heads=config.num_attention_heads, num_query_groups=1,
                    kv_channels=config.kv_channels, ffn_hidden_size=0,
                    vocab_size=config.vocab_size)
    per_channel = 3 * config.hidden_size * config.num_layers
    ffn = (count_parameters(config) - base.parameters()) / per_channel
    return replace(base, ffn_hidden_size=max(multiple, round(ffn / multiple) * multiple))


GPT_TINY = GPTShape(hidden_size=64, num_layers=2, num_attention_heads=4, num_query_groups=4,
                    kv_channels=16, ffn_hidden_size=192, vocab_size=512)


def build_gpt(shape: GPTShape, seq_length: int, dtype: torch.dtype, device: str) -> GPTModel:
    sizes = {k: v for k, v in asdict(shape).items() if k != "vocab_size"}
    config = TransformerConfig(
        **sizes,
        gated_linear_unit=True,
        activation_func=gelu_tanh,
        normalization="RMSNorm",
        add_bias_linear=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bias_activation_fusion=False,
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        use_cpu_initialization=device == "cpu",
    )
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.self_attention.submodules.core_attention = CausalSDPAttention
    model = GPTModel(
        config=config,
        transformer_layer_spec=spec,
        vocab_size=shape.vocab_size,
        max_sequence_length=seq_length,
        position_embedding_type="rope",
        share_embeddings_and_output_weights=True,
    )
    return model.to(device)
