"""Tiny fp32 Hawk / Griffin models for the generation tests."""

import torch

from griffin_megatron.config import GriffinConfig
from griffin_megatron.runtime import ensure_initialized

WINDOW = 8  # short, so that test sequences are several windows long
VOCAB = 512


def tiny_config(pattern: str, **overrides) -> GriffinConfig:
    fields = dict(
        block_pattern=pattern,
        num_layers=6 if pattern == "RRA" else 2,
        hidden_size=64,
        ffn_hidden_size=192,
        num_attention_heads=4,
        num_query_groups=1,
        kv_channels=16,
        lru_width=64,
        rglru_num_heads=4,
        conv_width=4,
        attention_window=WINDOW,
        vocab_size=VOCAB,
        seq_length=128,
        use_cpu_initialization=True,
        rglru_backend="torch",
    )
    fields.update(overrides)
    return GriffinConfig(**fields)


def build_tiny_model(pattern: str, seed: int = 0, **overrides):
    """A GriffinModel with random weights, including the norm gains and biases that start at 0."""
    from griffin_megatron.model import GriffinModel

    ensure_initialized()
    torch.manual_seed(seed)
    model = GriffinModel(tiny_config(pattern, **overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "layernorm" in name:
                param.normal_(0.0, 0.1)
    return model
