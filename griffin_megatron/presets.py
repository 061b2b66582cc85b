"""Named model presets: the paper's Hawk/Griffin sizes, RecurrentGemma 2B/9B, and tiny test models.

Paper sizes follow De et al. 2024, Table 2: MLP expansion 3 (each GeGLU branch is 3 x width),
attention head dimension 128, Conv1D width 4, local window 1024, training length 2048.
Choices the table leaves open, stated here:
- RG-LRU gate blocks of width 128 (rglru_num_heads = lru_width / 128), like the attention heads;
- multi-query attention (one key/value head), as in RecurrentGemma;
- a 16,384-token vocabulary. The size names count all parameters (tied embedding included)
  with this vocabulary, which puts every Hawk and Griffin preset within 10 % of its name
  (`griffin-megatron info --preset NAME`). Training replaces it with the tokenizer's padded size.
RecurrentGemma presets match HF `google/recurrentgemma-{2b,9b}` exactly (2,682,862,080 and
8,579,977,216 parameters).
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import torch

from .config import GriffinConfig, GriffinConfigError

PAPER_VOCAB_SIZE = 16384
PAPER_HEAD_DIM = 128
PAPER_GATE_BLOCK = 128

# name: (width, RNN width, depth, heads, nominal parameters)
PAPER_SIZES = {
    "100m": (768, 1024, 12, 6, 100e6),
    "200m": (1024, 1536, 12, 8, 200e6),
    "400m": (1536, 2048, 12, 12, 400e6),
    "1.3b": (2048, 2560, 24, 16, 1.3e9),
    "3b": (3072, 4096, 24, 24, 3e9),
    "7b": (4096, 5632, 32, 32, 7e9),
    "14b": (5120, 8192, 40, 40, 14e9),
}


def _paper_preset(width, lru_width, depth, heads, pattern) -> dict:
    return dict(
        block_pattern=pattern,
        num_layers=depth,
        hidden_size=width,
        ffn_hidden_size=3 * width,
        num_attention_heads=heads,
        num_query_groups=1,
        kv_channels=PAPER_HEAD_DIM,
        lru_width=lru_width,
        rglru_num_heads=lru_width // PAPER_GATE_BLOCK,
        conv_width=4,
        attention_window=1024,
        vocab_size=PAPER_VOCAB_SIZE,
        seq_length=2048,
    )


def _recurrentgemma(width, depth, heads) -> dict:
    return dict(
        block_pattern="RRA",
        num_layers=depth,
        hidden_size=width,
        ffn_hidden_size=3 * width,
        num_attention_heads=heads,
        num_query_groups=1,
        kv_channels=256,
        lru_width=width,
        rglru_num_heads=heads,
        conv_width=4,
        attention_window=2048,
        vocab_size=256000,
        seq_length=8192,
    )


def _tiny(pattern) -> dict:
    return dict(
        block_pattern=pattern,
        num_layers=3 if pattern == "RRA" else 2,
        hidden_size=64,
        ffn_hidden_size=192,
        num_attention_heads=4,
        num_query_groups=1,
        kv_channels=16,
        lru_width=64,
        rglru_num_heads=4,
        conv_width=4,
        attention_window=16,
        vocab_size=512,
        seq_length=64,
    )


PRESETS: Dict[str, dict] = {}
NOMINAL_PARAMETERS: Dict[str, float] = {}
for _size, (_w, _lru, _depth, _heads, _nominal) in PAPER_SIZES.items():
    for _family, _pattern in (("hawk", "R"), ("griffin", "RRA")):
        PRESETS[f"{_family}-{_size}"] = _paper_preset(_w, _lru, _depth, _heads, _pattern)
        NOMINAL_PARAMETERS[f"{_family}-{_size}"] = _nominal
PRESETS["recurrentgemma-2b"] = _recurrentgemma(2560, 26, 10)
PRESETS["recurrentgemma-9b"] = _recurrentgemma(4096, 38, 16)
PRESETS["griffin-tiny"] = _tiny("RRA")
PRESETS["hawk-tiny"] = _tiny("R")


def preset_names() -> list:
    return list(PRESETS)


def preset_architecture(name: str) -> dict:
    if name not in PRESETS:
        raise GriffinConfigError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}."
        )
    return dict(PRESETS[name])


def get_preset(name: str, **overrides) -> GriffinConfig:
    """GriffinConfig of a named preset; keyword overrides (parallel sizes, dtypes, ...) win."""
    return GriffinConfig(**{**preset_architecture(name), **overrides})


def meta_model(config: GriffinConfig, backend: str = "local"):
    """The whole model (TP = PP = 1) built on the meta device: every parameter has its shape and
    Megatron's tensor-parallel attributes, and no memory is allocated. Initialisation stays on:
    Megatron sets the attributes of its linears' weights only while initialising them (on the
    meta device that draws nothing)."""
    from .model import GriffinModel
    from .runtime import ensure_initialized

    ensure_initialized(seed=None)  # the meta device draws nothing
    meta_config = dataclasses.replace(
        config,
        use_cpu_initialization=True,
        perform_initialization=True,
        tensor_model_parallel_size=1,
        pipeline_model_parallel_size=1,
        virtual_pipeline_model_parallel_size=None,
        num_layers_per_virtual_pipeline_stage=None,
        num_layers_in_first_pipeline_stage=None,
        num_layers_in_last_pipeline_stage=None,
        sequence_parallel=False,
    )
    with torch.device("meta"):
        return GriffinModel(meta_config, backend=backend, pre_process=True, post_process=True)


def count_parameters(config: GriffinConfig, backend: str = "local") -> int:
    """Total parameters of the whole model (tied embedding counted once), built on the meta
    device: no memory is allocated, and Megatron's own modules do the counting."""
    return sum(p.numel() for p in meta_model(config, backend).parameters())
