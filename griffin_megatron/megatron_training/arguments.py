"""Griffin's options for Megatron-LM's argument parser, and the GriffinModelConfig they give.

Megatron-LM's own options keep their meaning: `--num-layers`, `--hidden-size`,
`--ffn-hidden-size`, `--num-attention-heads`, `--kv-channels` and `--seq-length` override the
preset's values; parallel sizes, precision, recompute and communication options become the
GriffinConfig's ModelParallelConfig fields. Griffin adds (through `extra_args_provider`) the
Griffin-only rows of `griffin_megatron.options`, as `griffin-megatron train` has them:

    --preset NAME            architecture preset (griffin-megatron info --list); required here
    --block-pattern R|RRA..  temporal block per layer, repeated (R recurrent, A local attention)
    --lru-width N            RG-LRU width
    --rglru-num-heads N      block-diagonal blocks of the RG-LRU gates
    --attention-window N     local attention window (keys per query, itself included)
    --backend local|te       layer implementation (PyTorch, or Transformer Engine)
    --local-attention auto|flex|blocked   the local backend's attention kernel (auto: flex on
                             CUDA, blocked on a CPU, where flex cannot train)

The GriffinConfig itself comes from `griffin_megatron.run_config`, which `train` uses too.
Everything here runs before any process group exists, and every failure is one sentence.
"""

from __future__ import annotations

import argparse

import torch

from .. import options
from ..checkpoint.record import RECORD_ARG, model_record
from ..device import gradient_accumulation_fusion
from ..errors import ConfigError
from ..presets import preset_architecture, preset_names
from ..run_config import (
    FUSION_REQUESTS,
    architecture_from_options,
    griffin_config,
    megatron_lm_settings,
    padded_vocab_size,
)

# The rows of options.py that Megatron-LM's parser lacks; its own rows (num_layers,
# hidden_size, ..., seq_length) are the same dests as the table's.
GRIFFIN_OPTIONS = ("preset", "block-pattern", "lru-width", "rglru-num-heads", "attention-window",
                   "backend", "local-attention")


def add_griffin_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Megatron-LM's `extra_args_provider`: the Griffin-only rows of options.py."""
    group = parser.add_argument_group("Griffin / Hawk")
    for name in GRIFFIN_OPTIONS:
        option = options.BY_NAME[name]
        kwargs = options.argument(option)
        if name == "preset":
            # `train` defaults to a tiny model; a Megatron-LM job names its model.
            del kwargs["default"]
            kwargs.update(required=True, choices=preset_names(), metavar="NAME")
        group.add_argument(option.flag, **kwargs)
    return parser


def apply_preset(args: argparse.Namespace) -> None:
    """Fill Megatron-LM's architecture options the user left unset from the preset (Megatron's
    argument checks need them), before `validate_args`."""
    architecture = preset_architecture(args.preset)
    for option in options.OPTIONS:
        if option.field is not None and option.name not in GRIFFIN_OPTIONS:
            if getattr(args, option.dest) is None:
                setattr(args, option.dest, architecture[option.field])
    if args.max_position_embeddings is None:
        args.max_position_embeddings = args.seq_length


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
        FUSION_REQUESTS[args.gradient_accumulation_fusion], torch.cuda.is_available())
    architecture = architecture_from_options(args)
    tp = args.tensor_model_parallel_size
    vocab = padded_vocab_size(architecture["vocab_size"], args.make_vocab_size_divisible_by, tp)
    griffin_config(architecture, vocab, dict(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        sequence_parallel=args.sequence_parallel, use_cpu_initialization=True,
        pipeline_dtype=torch.float32))  # any dtype: only the shapes are checked here


def model_config_from_args(args: argparse.Namespace, tokenizer_vocab_size: int):
    """GriffinModelConfig for `pretrain_cfg_container_from_args`; records the padded vocabulary
    in args (Megatron-LM reads args.padded_vocab_size) and the architecture record that
    griffin-megatron's checkpoint readers rebuild the model from."""
    from .model_builder import GriffinModelConfig

    vocab = padded_vocab_size(tokenizer_vocab_size, args.make_vocab_size_divisible_by,
                              args.tensor_model_parallel_size)
    config = griffin_config(architecture_from_options(args), vocab, megatron_lm_settings(args))
    args.padded_vocab_size = vocab
    setattr(args, RECORD_ARG, model_record(config, args.backend, source="megatron.training"))
    return GriffinModelConfig(transformer=config, backend=args.backend,
                              kernel_warm_up=(args.micro_batch_size, args.seq_length))
