"""The GriffinConfig of a training run: the preset, the architecture options on top of it, the
tokenizer's padded vocabulary, and Megatron's parallel, precision and recompute settings."""

from __future__ import annotations

import argparse
from typing import Optional

import torch

from ..errors import ConfigError
from ..config import GriffinConfig
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


def virtual_pipeline_size(args: argparse.Namespace, num_layers: int) -> Optional[int]:
    """Megatron-LM's rule: the layers of a (middle) pipeline stage / layers per virtual stage."""
    per_virtual = args.num_layers_per_virtual_pipeline_stage
    pp = args.pipeline_model_parallel_size
    if per_virtual is None or pp == 1:
        return None
    first, last = args.decoder_first_pipeline_num_layers, args.decoder_last_pipeline_num_layers
    middle_stages = pp - (first is not None) - (last is not None)
    middle_layers = num_layers - (first or 0) - (last or 0)
    if middle_stages < 1 or middle_layers % middle_stages:
        raise ConfigError(
            f"{num_layers} layers with the given first/last stage sizes do not split evenly over "
            f"the remaining {middle_stages} pipeline stages; adjust the stage sizes."
        )
    per_stage = middle_layers // middle_stages
    if per_stage % per_virtual:
        raise ConfigError(
            f"--num-layers-per-virtual-pipeline-stage={per_virtual} does not divide the "
            f"{per_stage} layers of a pipeline stage; pick a divisor of {per_stage}."
        )
    return per_stage // per_virtual


def build_model_config(args: argparse.Namespace, vocab_size: int) -> GriffinConfig:
    architecture = architecture_from_args(args)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    vpp = virtual_pipeline_size(args, architecture["num_layers"])
    overrides = dict(
        vocab_size=vocab_size,
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=vpp,
        num_layers_in_first_pipeline_stage=args.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=args.decoder_last_pipeline_num_layers,
        sequence_parallel=args.sequence_parallel,
        bf16=args.bf16,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        use_cpu_initialization=not torch.cuda.is_available(),
        recompute_granularity=args.recompute_granularity,
        recompute_method=args.recompute_method,
        recompute_num_layers=args.recompute_num_layers,
        # The loss is a token-weighted mean over the whole global batch (all micro-batches and
        # data-parallel ranks), whatever the split into micro-batches.
        calculate_per_token_loss=True,
        # Megatron-LM frees a stage's sent activations right after the send; with gloo the send
        # is asynchronous and would read the freed storage (measured: wrong, run-to-run varying
        # losses with interleaved stages), so only on GPUs, where NCCL streams order it.
        deallocate_pipeline_outputs=torch.cuda.is_available(),
    )
    if vpp is not None:
        # As Megatron-LM: interleaved stages exchange activations with overlapped p2p.
        overrides.update(overlap_p2p_comm=True, batch_p2p_comm=False)
    try:
        return GriffinConfig(**{**architecture, **overrides})
    except AssertionError as error:
        # TransformerConfig checks some combinations with bare asserts; keep their message.
        raise ConfigError(f"the model settings are inconsistent: {error}") from None
