"""Tiny fp32 Hawk / Griffin models for the generation tests."""

import pytest
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


# Fixtures shared by the generation and evaluation tests (their conftests import them).
# The tiny models' ops are microseconds long: a second OpenMP thread only adds synchronisation,
# and on a machine shared with other jobs each op can stall waiting for a preempted thread.
@pytest.fixture(autouse=True, scope="package")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def griffin():
    return build_tiny_model("RRA")


@pytest.fixture(scope="module")
def hawk():
    return build_tiny_model("R")
