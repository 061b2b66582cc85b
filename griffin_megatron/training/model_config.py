"""The GriffinConfig of a training run: the preset, the architecture options on top of it, the
tokenizer's padded vocabulary, and Megatron's parallel, precision and recompute settings.

`train` and `plan` both build their config here, so both are checked by the same rules (the
config's own validation, `griffin_megatron.config`)."""

from __future__ import annotations

import argparse
from typing import Optional

import torch

from ..config import GriffinConfig, virtual_stages
from ..device import FUSION_CHOICES, run_settings
from ..errors import ConfigError
from ..presets import preset_architecture
from ..recipes import ARCHITECTURE_KEYS


def architecture_from_args(args: argparse.Namespace) -> dict:
    """The preset's architecture with the architecture options the user set (the recipe keys
    that name GriffinConfig fields)."""
    architecture = preset_architecture(args.preset)
    for key, field in ARCHITECTURE_KEYS.items():
        value = getattr(args, key.replace("-", "_"))
        if value is not None:
            architecture[field] = value
    return architecture


def build_model_config(args: argparse.Namespace, vocab_size: Optional[int] = None) -> GriffinConfig:
    """The run's GriffinConfig; `vocab_size` None keeps the preset's (padded to the tensor-parallel
    size, as the tokenizer's is: enough to check a layout before the tokenizer is known)."""
    architecture = architecture_from_args(args)
    if vocab_size is None:
        tp = args.tensor_model_parallel_size
        vocab_size = -(-architecture["vocab_size"] // tp) * tp
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    interleaved = args.num_layers_per_virtual_pipeline_stage is not None
    overrides = dict(
        vocab_size=vocab_size,
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        num_layers_per_virtual_pipeline_stage=args.num_layers_per_virtual_pipeline_stage,
        context_parallel_size=args.context_parallel_size,
        num_layers_in_first_pipeline_stage=args.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=args.decoder_last_pipeline_num_layers,
        sequence_parallel=args.sequence_parallel,
        local_attention_impl=args.local_attention,
        bf16=args.bf16,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        recompute_granularity=args.recompute_granularity,
        recompute_method=args.recompute_method,
        recompute_num_layers=args.recompute_num_layers,
        # The loss is a token-weighted mean over the whole global batch (all micro-batches and
        # data-parallel ranks), whatever the split into micro-batches.
        calculate_per_token_loss=True,
        # CPU initialisation, pipeline-output freeing, fused weight-gradient accumulation: the
        # CUDA-dependent settings, shared with Megatron-LM's pretrain() (device.py).
        **run_settings(FUSION_CHOICES[getattr(args, "gradient_accumulation_fusion", "auto")]),
    )
    if interleaved:
        # As Megatron-LM: interleaved stages exchange activations with overlapped p2p.
        overrides.update(overlap_p2p_comm=True, batch_p2p_comm=False)
    try:
        return GriffinConfig(**{**architecture, **overrides})
    except AssertionError as error:
        # TransformerConfig checks some combinations with bare asserts; keep their message.
        raise ConfigError(f"the model settings are inconsistent: {error}") from None


def virtual_pipeline_size(args: argparse.Namespace) -> Optional[int]:
    """Model chunks per pipeline rank (None without interleaving), by the config's own rule."""
    if args.num_layers_per_virtual_pipeline_stage is None or args.pipeline_model_parallel_size == 1:
        return None
    return virtual_stages(build_model_config(args))
