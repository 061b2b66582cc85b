"""Tiny fp32 Hawk / Griffin models for the generation tests."""

import torch

from griffin_megatron.config import GriffinConfig
from griffin_megatron.presets import get_preset
from griffin_megatron.runtime import ensure_initialized

WINDOW = 8  # short, so that test sequences are several windows long
VOCAB = 512  # the tiny presets' vocabulary


def tiny_config(pattern: str, **overrides) -> GriffinConfig:
    """The griffin-tiny / hawk-tiny presets with a short window; Griffin gets two attention layers."""
    preset = {"RRA": "griffin-tiny", "R": "hawk-tiny"}[pattern]
    fields = dict(
        attention_window=WINDOW,
        seq_length=128,
        use_cpu_initialization=True,
        rglru_backend="torch",
    )
    if pattern == "RRA":
        fields["num_layers"] = 6
    return get_preset(preset, **{**fields, **overrides})


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
