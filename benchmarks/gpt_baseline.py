"""The Transformer baseline of the throughput benchmark: a Megatron-Core GPTModel.

Same residual blocks as Griffin (RMSNorm, GeGLU-tanh MLP with 3x expansion, tied embedding) but
global causal multi-head attention with RoPE in every layer; at Griffin-400M's width and depth
(1536, 12 layers, 12 heads of 128) it has about 400M parameters. Megatron-Core's local
DotProductAttention materialises the T x T scores; the baseline uses PyTorch's fused SDPA
(flash attention on a GPU) instead, so it is as fast as a Transformer gets without TE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


GPT_400M = GPTShape()
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
