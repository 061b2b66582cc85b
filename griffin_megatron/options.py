"""The options of a training run: one table, read by `train`'s parser, the YAML recipes and `plan`.

Each row is one option: its name (the long option without dashes, which is also its recipe key),
its group in `--help`, its type, its default, its help text, and where it has them its choices,
its lowest accepted value and the GriffinConfig field it sets on top of the preset. Megatron-LM's
names and meanings unless the help says "(ours)".

    griffin-megatron train --tensor-model-parallel-size 4     # the command line
    tensor-model-parallel-size: 4                            # the same option in a recipe

Adding an option is adding one row to OPTIONS; `train --help`, `--config` files, recipes and
`plan` all see it. This module imports nothing heavy, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
# The local backend's core attention (GriffinConfig.local_attention_impl), a run setting: auto is
# FlexAttention on CUDA and blocked SDPA on a CPU (modules/flex_attention.py).
LOCAL_ATTENTION_CHOICES = ("auto", "flex", "blocked")
LOCAL_ATTENTION_HELP = ("local backend's attention kernel: flex (FlexAttention; trains on CUDA "
                        "only), blocked (SDPA over query blocks), auto = flex on CUDA, blocked "
                        "on a CPU (ours)")

MODEL, PARALLEL, BATCH, RECOMPUTE, DATA, CHECKPOINTS, EVALUATION, LOGGING = (
    "model", "parallelism", "batch and schedule", "activation recompute", "data", "checkpoints",
    "evaluation", "logging",
)


@dataclass(frozen=True)
class Option:
    """One option of `griffin-megatron train` (and key of a recipe).

    kind: int, float, bool (a flag: `--name` on the command line, true/false in YAML), str, or
        list (one or more words on the command line; a string or a list in YAML).
    minimum: the lowest accepted number (None: any); a default of None always passes.
    field: the GriffinConfig field the option overrides on top of the preset's architecture.
    """

    name: str
    group: str
    kind: type
    default: Any
    help: str
    choices: Optional[Tuple[str, ...]] = None
    minimum: Optional[float] = None
    field: Optional[str] = None
    metavar: Optional[str] = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return "--" + self.name


OPTIONS: Tuple[Option, ...] = (
    # model: a preset, and its architecture numbers where the run changes them
    Option("preset", MODEL, str, "griffin-tiny", "model preset (griffin-megatron info --list) (ours)"),
    Option("block-pattern", MODEL, str, None,
           "temporal block per layer, repeated: R recurrent, A local attention (ours)",
           field="block_pattern"),
    Option("num-layers", MODEL, int, None, "number of residual blocks", minimum=1, field="num_layers"),
    Option("hidden-size", MODEL, int, None, "model width", minimum=1, field="hidden_size"),
    Option("ffn-hidden-size", MODEL, int, None, "MLP width of each GeGLU branch", minimum=1,
           field="ffn_hidden_size"),
    Option("num-attention-heads", MODEL, int, None, "query heads of the local attention", minimum=1,
           field="num_attention_heads"),
    Option("kv-channels", MODEL, int, None, "attention head dimension", minimum=1,
           field="kv_channels"),
    Option("lru-width", MODEL, int, None, "RG-LRU width (ours)", minimum=1, field="lru_width"),
    Option("rglru-num-heads", MODEL, int, None, "block-diagonal blocks of the RG-LRU gates (ours)",
           minimum=1, field="rglru_num_heads"),
    Option("attention-window", MODEL, int, None,
           "local attention window W: keys per query, itself included (ours)", minimum=1,
           field="attention_window"),
    Option("seq-length", MODEL, int, None, "training sequence length (default: the preset's)",
           minimum=1, field="seq_length"),
    Option("backend", MODEL, str, "local", "layer implementation (ours)", choices=("local", "te")),
    Option("local-attention", MODEL, str, "auto", LOCAL_ATTENTION_HELP,
           choices=LOCAL_ATTENTION_CHOICES),
    Option("make-vocab-size-divisible-by", MODEL, int, 128,
           "pad the embedding table to a multiple of this (and of the tensor-parallel size)",
           minimum=1),
    # parallelism
    Option("tensor-model-parallel-size", PARALLEL, int, 1, "tensor-parallel size (TP)", minimum=1),
    Option("pipeline-model-parallel-size", PARALLEL, int, 1, "pipeline-parallel size (PP)",
           minimum=1),
    Option("context-parallel-size", PARALLEL, int, 1,
           "split every sequence into this many contiguous shards, one per rank (CP)", minimum=1),
    Option("num-layers-per-virtual-pipeline-stage", PARALLEL, int, None,
           "layers per virtual pipeline stage (interleaved 1F1B); unset: not interleaved",
           minimum=1),
    Option("decoder-first-pipeline-num-layers", PARALLEL, int, None,
           "layers of the first pipeline stage (uneven stages)", minimum=1),
    Option("decoder-last-pipeline-num-layers", PARALLEL, int, None,
           "layers of the last pipeline stage (uneven stages)", minimum=1),
    Option("sequence-parallel", PARALLEL, bool, False,
           "split norms and activations over the sequence (needs TP > 1)"),
    Option("use-distributed-optimizer", PARALLEL, bool, False,
           "shard optimizer state over data-parallel ranks"),
    Option("gradient-accumulation-fusion", PARALLEL, str, "auto",
           "accumulate weight gradients inside the GEMM with NVIDIA Apex's "
           "fused_weight_gradient_mlp_cuda: auto where it imports on a GPU, on (refused where "
           "it does not import), off (ours)", choices=("auto", "on", "off")),
    # batch and schedule
    Option("micro-batch-size", BATCH, int, 1, "sequences per micro-batch and data-parallel rank",
           minimum=1),
    Option("global-batch-size", BATCH, int, None,
           "sequences per optimizer step, all ranks (default: micro-batch x data-parallel size)",
           minimum=1),
    Option("train-iters", BATCH, int, None, "optimizer steps", minimum=1),
    Option("lr", BATCH, float, 3e-4, "peak learning rate", minimum=0),
    Option("min-lr", BATCH, float, 0.0, "learning rate at the end of the decay", minimum=0),
    Option("lr-warmup-iters", BATCH, int, 0, "linear warmup steps", minimum=0),
    Option("lr-decay-iters", BATCH, int, None, "steps of the decay (default: --train-iters)",
           minimum=1),
    Option("lr-decay-style", BATCH, str, "cosine", "decay after warmup", choices=LR_DECAY_STYLES),
    Option("weight-decay", BATCH, float, 0.1, "AdamW weight decay", minimum=0),
    Option("clip-grad", BATCH, float, 1.0, "gradient-norm clipping threshold", minimum=0),
    Option("adam-beta1", BATCH, float, 0.9, "Adam first-moment decay", minimum=0),
    Option("adam-beta2", BATCH, float, 0.95, "Adam second-moment decay", minimum=0),
    Option("adam-eps", BATCH, float, 1e-8, "Adam epsilon", minimum=0),
    Option("bf16", BATCH, bool, False, "bf16 mixed precision (fp32 main weights and gradients)"),
    Option("seed", BATCH, int, 1234, "random seed", minimum=0),
    # activation recompute
    Option("recompute-granularity", RECOMPUTE, str, None, "activation recompute",
           choices=("full", "selective")),
    Option("recompute-method", RECOMPUTE, str, None, "which layers full recompute covers",
           choices=("uniform", "block")),
    Option("recompute-num-layers", RECOMPUTE, int, None,
           "uniform: layers per recomputed group; block: recomputed layers per pipeline stage",
           minimum=1),
    # data
    Option("data-path", DATA, list, None,
           "indexed dataset prefix(es), optionally weighted: 'w1 p1 w2 p2'; omit for the "
           "embedded default run", metavar="[WEIGHT] PREFIX"),
    Option("split", DATA, str, "98,2,0", "train,valid,test proportions, e.g. 969,30,1"),
    Option("eod-mask-loss", DATA, bool, False,
           "no loss on predictions made at end-of-document tokens"),
    Option("tokenizer", DATA, str, None,
           "tokenizer file or directory (default: the one recorded by preprocess)"),
    Option("data-cache-path", DATA, str, None,
           "where dataset index caches go (default: beside the data)"),
    Option("num-workers", DATA, int, 0, "data-loader worker processes", minimum=0),
    # checkpoints
    Option("save", CHECKPOINTS, str, None, "checkpoint directory (default: ./runs/griffin-<time>)"),
    Option("load", CHECKPOINTS, str, None, "checkpoint directory to resume from"),
    Option("finetune", CHECKPOINTS, bool, False,
           "with --load: take the model weights only; optimizer, schedule, data position and "
           "iteration start afresh"),
    Option("save-interval", CHECKPOINTS, int, None,
           "steps between checkpoints (default: only at the end)", minimum=1),
    Option("no-save", CHECKPOINTS, bool, False, "write no checkpoint (ours)"),
    Option("override-opt-param-scheduler", CHECKPOINTS, bool, False,
           "on resume, follow this run's --lr / --min-lr / --lr-warmup-iters / --lr-decay-* / "
           "--train-iters / --weight-decay from the checkpoint's step on"),
    Option("use-checkpoint-opt-param-scheduler", CHECKPOINTS, bool, False,
           "on resume, keep the checkpoint's learning-rate schedule whatever the options say "
           "(without either flag, a different schedule is refused)"),
    Option("no-checkpoint-hashes", CHECKPOINTS, bool, False,
           "record and check only each checkpoint file's size, not its SHA-256 (for checkpoints "
           "so large that hashing them takes minutes) (ours)"),
    # evaluation
    Option("eval-interval", EVALUATION, int, 1000, "steps between validation runs", minimum=1),
    Option("eval-iters", EVALUATION, int, 10, "validation steps per run", minimum=1),
    # logging
    Option("log-interval", LOGGING, int, 10, "steps between log lines", minimum=1),
    Option("tensorboard-dir", LOGGING, str, None, "TensorBoard event directory"),
    Option("wandb-project", LOGGING, str, None, "log to this Weights & Biases project"),
    Option("wandb-exp-name", LOGGING, str, None, "Weights & Biases run name"),
)

BY_NAME: Dict[str, Option] = {option.name: option for option in OPTIONS}
BY_DEST: Dict[str, Option] = {option.dest: option for option in OPTIONS}


def default(name: str) -> Any:
    """The one default of an option, by name ("bf16") or dest ("micro_batch_size")."""
    option = BY_NAME.get(name) or BY_DEST[name]
    return option.default


def defaults() -> Dict[str, Any]:
    """dest -> default of every option."""
    return {option.dest: option.default for option in OPTIONS}


def options_namespace(values: Mapping[str, Any]) -> argparse.Namespace:
    """Every option at its default, overridden by `values` (recipe keys or dests): what `train`
    would see for a recipe given as its --config and nothing on the command line."""
    namespace = argparse.Namespace(**defaults())
    for key, value in values.items():
        setattr(namespace, key.replace("-", "_"), value)
    return namespace


def global_batch_size(args: argparse.Namespace, world: int) -> int:
    """--global-batch-size, or when not given one micro-batch on every data-parallel rank of
    `world` processes (as Megatron-LM; a world that TP x PP does not divide is refused by the
    layout rules, which get the micro-batch then)."""
    if args.global_batch_size is not None:
        return args.global_batch_size
    model_parallel = (args.tensor_model_parallel_size * args.pipeline_model_parallel_size
                      * args.context_parallel_size)
    data_parallel = world // model_parallel if world >= 1 and world % model_parallel == 0 else 1
    return args.micro_batch_size * data_parallel


def argument(option: Option, *, defaults: bool = True) -> Dict[str, Any]:
    """The keyword arguments of `add_argument` for one row (see add_to_parser)."""
    default = option.default if defaults else argparse.SUPPRESS
    kwargs: Dict[str, Any] = dict(default=default, help=option.help)
    if option.kind is bool:
        kwargs["action"] = "store_true"
    elif option.kind is list:
        kwargs.update(nargs="+", metavar=option.metavar)
    else:
        kwargs.update(type=option.kind, choices=option.choices, metavar=option.metavar)
    return kwargs


def add_to_parser(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """One argparse argument per row, in groups, with the row's help and default. With
    `defaults=False` an option the command line does not give stays out of the namespace
    (argparse.SUPPRESS), which tells a typed value from an equal default; the caller then
    applies `defaults()` itself."""
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS:
        group = groups.get(option.group) or groups.setdefault(
            option.group, parser.add_argument_group(option.group)
        )
        group.add_argument(option.flag, **argument(option, defaults=defaults))
