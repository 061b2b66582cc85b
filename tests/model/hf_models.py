"""Tiny random HF RecurrentGemma models built inside the tests (no hub access)."""

from __future__ import annotations

import torch
from transformers import RecurrentGemmaConfig, RecurrentGemmaForCausalLM

GRIFFIN = dict(block_types=["recurrent", "recurrent", "attention"], num_hidden_layers=3)
HAWK = dict(block_types=["recurrent"], num_hidden_layers=2)


def make_hf_model(
    block_types=GRIFFIN["block_types"],
    num_hidden_layers=3,
    hidden_size=64,
    lru_width=96,
    num_attention_heads=4,
    num_key_value_heads=1,
    attention_window_size=8,
    vocab_size=300,
    intermediate_size=192,
    seed=0,
    **config_kwargs,
) -> RecurrentGemmaForCausalLM:
    """HF model in eval mode whose zero-initialised tensors (norm gains, biases) are randomised,
    so that every parameter influences the logits the parity tests compare. config_kwargs: more
    RecurrentGemmaConfig fields (hidden_activation, tie_word_embeddings, ...)."""
    torch.manual_seed(seed)
    config = RecurrentGemmaConfig(
        num_hidden_layers=num_hidden_layers,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        lru_width=lru_width,
        attention_window_size=attention_window_size,
        conv1d_width=4,
        block_types=list(block_types),
        **config_kwargs,
    )
    model = RecurrentGemmaForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    return model


def hf_logits(model, input_ids, position_ids=None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids, position_ids=position_ids, use_cache=False).logits


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm()).item()
