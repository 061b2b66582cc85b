"""Griffin's options for Megatron-LM's argument parser, and the GriffinModelConfig they give.

Megatron-LM's own options keep their meaning: `--num-layers`, `--hidden-size`,
`--ffn-hidden-size`, `--num-attention-heads`, `--kv-channels` and `--seq-length` override the
preset's values; parallel sizes, precision, recompute and communication options become the
GriffinConfig's ModelParallelConfig fields. Griffin adds (through `extra_args_provider`):

    --preset NAME            architecture preset (griffin-megatron info --list)
    --block-pattern R|RRA..  temporal block per layer, repeated (R recurrent, A local attention)
    --lru-width N            RG-LRU width
    --rglru-num-heads N      block-diagonal blocks of the RG-LRU gates
    --attention-window N     local attention window (keys per query, itself included)
    --backend local|te       layer implementation (PyTorch, or Transformer Engine)
    --local-attention auto|flex|blocked   the local backend's attention kernel (auto: flex on
                             CUDA, blocked on a CPU, where flex cannot train)

Everything here runs before any process group exists, and every failure is one sentence.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import torch
from megatron.core.model_parallel_config import ModelParallelConfig

from ..checkpoint.record import RECORD_ARG, model_record
from ..config import GriffinConfig
from ..device import gradient_accumulation_fusion, run_settings
from ..errors import ConfigError
from ..options import LOCAL_ATTENTION_CHOICES, LOCAL_ATTENTION_HELP
from ..presets import preset_architecture, preset_names

# Megatron-LM option (dest) -> GriffinConfig field, filled from the preset when not given.
MEGATRON_ARCHITECTURE_OPTIONS = {
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "ffn_hidden_size": "ffn_hidden_size",
    "num_attention_heads": "num_attention_heads",
    "kv_channels": "kv_channels",
    "seq_length": "seq_length",
}
# Griffin's own options (dest) -> GriffinConfig field; None keeps the preset's value.
GRIFFIN_ARCHITECTURE_OPTIONS = {
    "block_pattern": "block_pattern",
    "lru_width": "lru_width",
    "rglru_num_heads": "rglru_num_heads",
    "attention_window": "attention_window",
}
# TransformerConfig run settings (not architecture) taken from Megatron-LM's options as well.
RUN_FIELDS = ("recompute_granularity", "recompute_method", "recompute_num_layers",
              "calculate_per_token_loss")


def add_griffin_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Megatron-LM's `extra_args_provider`."""
    group = parser.add_argument_group("Griffin / Hawk")
    group.add_argument("--preset", required=True, choices=preset_names(), metavar="NAME",
                       help="architecture preset, e.g. griffin-400m, hawk-1.3b, griffin-tiny")
    group.add_argument("--block-pattern", default=None,
                       help="temporal block per layer, repeated: R recurrent, A local attention")
    group.add_argument("--lru-width", type=int, default=None, help="RG-LRU width")
    group.add_argument("--rglru-num-heads", type=int, default=None,
                       help="block-diagonal blocks of the RG-LRU gates")
    group.add_argument("--attention-window", type=int, default=None,
                       help="local attention window (keys per query, itself included)")
    group.add_argument("--backend", choices=("local", "te"), default="local",
                       help="layer implementation: local (PyTorch) or te (Transformer Engine)")
    group.add_argument("--local-attention", choices=LOCAL_ATTENTION_CHOICES, default="auto",
                       help=LOCAL_ATTENTION_HELP)
    return parser


def apply_preset(args: argparse.Namespace) -> None:
    """Fill Megatron-LM's architecture options the user left unset from the preset (Megatron's
    argument checks need them), before `validate_args`."""
    architecture = preset_architecture(args.preset)
    for dest, field in MEGATRON_ARCHITECTURE_OPTIONS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, architecture[field])
    if args.max_position_embeddings is None:
        args.max_position_embeddings = args.seq_length


def architecture_from_args(args: argparse.Namespace) -> dict:
    architecture = preset_architecture(args.preset)
    for dest, field in {**MEGATRON_ARCHITECTURE_OPTIONS, **GRIFFIN_ARCHITECTURE_OPTIONS}.items():
        value = getattr(args, dest)
        if value is not None:
            architecture[field] = value
    if args.group_query_attention:
        architecture["num_query_groups"] = args.num_query_groups
    return architecture


def padded_vocab_size(vocab_size: int, divisible_by: int, tensor_parallel: int) -> int:
    """As `griffin-megatron train` pads (training/data.py): a multiple of both divisible_by and
    the TP size, so the vocabulary (an architecture field) does not depend on the TP size and a
    checkpoint saved at one TP size resumes at another."""
    multiple = math.lcm(divisible_by, tensor_parallel)
    return int(math.ceil(vocab_size / multiple) * multiple)


def _run_settings(args: argparse.Namespace) -> dict:
    """ModelParallelConfig fields (parallel sizes, precision, communication) and the recompute
    and loss settings, read from Megatron-LM's options as `core_transformer_config_from_args`
    reads them."""
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(ModelParallelConfig)
                if hasattr(args, f.name)}
    settings.update({name: getattr(args, name) for name in RUN_FIELDS})
    settings.update(
        pipeline_dtype=args.params_dtype,
        batch_p2p_comm=not args.overlap_p2p_comm,
        num_layers_in_first_pipeline_stage=args.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=args.decoder_last_pipeline_num_layers,
    )
    # The CUDA-dependent settings, shared with `griffin-megatron train` (device.py); the fusion
    # was settled (and said) by check_griffin_arguments.
    settings.update(run_settings(args.gradient_accumulation_fusion,
                                 cpu_initialization=args.use_cpu_initialization))
    return settings


def griffin_config(args: argparse.Namespace, vocab_size: int) -> GriffinConfig:
    """The GriffinConfig of the run; GriffinConfigError (one sentence) when inconsistent."""
    return GriffinConfig(**{**architecture_from_args(args), **_run_settings(args),
                            "vocab_size": vocab_size,
                            "local_attention_impl": args.local_attention})


def tp_comm_overlap_refusal(backend: str) -> str:
    """Why --tp-comm-overlap is refused with this backend, in one sentence."""
    if backend == "te":
        # TE's get_ub() has userbuffers only for the qkv, proj, fc1 and fc2 GEMMs; the recurrent
        # block's linears would ask for "recurrent_in" / "recurrent_out" and fail mid-build.
        why = ("Transformer Engine's userbuffers know only the qkv, proj, fc1 and fc2 GEMMs, "
               "not the recurrent block's linear_in / linear_out")
    else:
        why = ("the local backend's linears do not overlap communication (a Transformer Engine "
               "feature)")
    return (f"--tp-comm-overlap cannot be used with --backend {backend}: {why}; drop "
            "--tp-comm-overlap.")


def check_griffin_arguments(args: argparse.Namespace) -> None:
    """Griffin's shape rules (e.g. heads divisible by the TP size), checked right after parsing,
    before Megatron-LM's own checks, so that the user reads Griffin's sentence."""
    from ..modules.flex_attention import check_local_attention_choice

    if args.tp_comm_overlap:
        raise ConfigError(tp_comm_overlap_refusal(args.backend))
    check_local_attention_choice(args.local_attention, args.backend, training=True)
    # Megatron-LM's default (on) means "wherever it can run": settled once, here, before
    # Megatron-LM's own checks read it; --no-gradient-accumulation-fusion turns it off.
    args.gradient_accumulation_fusion = gradient_accumulation_fusion(
        None if args.gradient_accumulation_fusion else False, torch.cuda.is_available())
    architecture = architecture_from_args(args)
    tp = args.tensor_model_parallel_size
    architecture["vocab_size"] = padded_vocab_size(
        architecture["vocab_size"], args.make_vocab_size_divisible_by, tp)
    GriffinConfig(**architecture, tensor_model_parallel_size=tp,
                  pipeline_model_parallel_size=args.pipeline_model_parallel_size,
                  sequence_parallel=args.sequence_parallel, use_cpu_initialization=True,
                  pipeline_dtype=torch.float32)  # any dtype: only the shapes are checked here


def model_config_from_args(args: argparse.Namespace, tokenizer_vocab_size: int):
    """GriffinModelConfig for `pretrain_cfg_container_from_args`; records the padded vocabulary
    in args (Megatron-LM reads args.padded_vocab_size) and the architecture record that
    griffin-megatron's checkpoint readers rebuild the model from."""
    from .model_builder import GriffinModelConfig

    vocab = padded_vocab_size(tokenizer_vocab_size, args.make_vocab_size_divisible_by,
                              args.tensor_model_parallel_size)
    config = griffin_config(args, vocab)
    args.padded_vocab_size = vocab
    setattr(args, RECORD_ARG, model_record(config, args.backend, source="megatron.training"))
    return GriffinModelConfig(transformer=config, backend=args.backend,
                              kernel_warm_up=(args.micro_batch_size, args.seq_length))
