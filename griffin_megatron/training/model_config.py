"""The GriffinConfig of a training run: the preset, the architecture options on top of it, the
tokenizer's padded vocabulary, and Megatron's parallel, precision and recompute settings."""

from __future__ import annotations

import argparse
from typing import Optional

import torch

from ..config import GriffinConfig
from ..presets import preset_architecture

# option dest -> GriffinConfig field, for the architecture options that override the preset.
ARCHITECTURE_OPTIONS = {
    "block_pattern": "block_pattern",
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "ffn_hidden_size": "ffn_hidden_size",
    "num_attention_heads": "num_attention_heads",
    "kv_channels": "kv_channels",
    "lru_width": "lru_width",
    "rglru_num_heads": "rglru_num_heads",
    "attention_window": "attention_window",
    "seq_length": "seq_length",
}


def architecture_from_args(args: argparse.Namespace) -> dict:
    """The preset's architecture with the options the user set."""
    architecture = preset_architecture(args.preset)
    for dest, field in ARCHITECTURE_OPTIONS.items():
        value = getattr(args, dest)
        if value is not None:
            architecture[field] = value
    if args.hidden_size is not None:
        # Widths the preset tied to its hidden size follow a new one unless given too.
        if args.lru_width is None:
            architecture["lru_width"] = None
        if args.ffn_hidden_size is None:
            architecture["ffn_hidden_size"] = None
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
        raise ValueError(
            f"{num_layers} layers with the given first/last stage sizes do not split evenly over "
            f"the remaining {middle_stages} pipeline stages; adjust the stage sizes."
        )
    per_stage = middle_layers // middle_stages
    if per_stage % per_virtual:
        raise ValueError(
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
        raise ValueError(f"the model settings are inconsistent: {error}") from None
