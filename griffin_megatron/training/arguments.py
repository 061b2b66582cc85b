"""`griffin-megatron train` options: Megatron-LM's names where Megatron-LM has the option, ours
for Griffin's architecture, plus `--config FILE.yaml` whose keys are the same names without the
leading dashes. Precedence: command line > --config file > built-in defaults (and, when no
--data-path is given, the embedded default run's settings, see default_run.py).

`finalize_arguments` merges those sources and checks everything that can be checked before any
process group exists, each failure one sentence.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, Iterable, List, Optional

from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split

from ..errors import ConfigError, InputFileError, MissingDependencyError

LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
EXPLICIT = "_explicit"  # the set of dests the user gave on the command line


class _RecordExplicit(argparse.Action):
    """Mixin: remember which options were given on the command line (so a --config file does
    not override them, even when they equal the default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        explicit = getattr(namespace, EXPLICIT, None)
        if explicit is None:
            explicit = set()
            setattr(namespace, EXPLICIT, explicit)
        explicit.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


def _record_explicit(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            action.__class__ = type(
                f"Recorded{type(action).__name__}", (_RecordExplicit, type(action)), {}
            )


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE.yaml",
        help="YAML file of options (keys are these option names without dashes); the command "
        "line overrides it",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--preset", default="griffin-tiny",
                       help="model preset (griffin-megatron info --list)")
    model.add_argument("--block-pattern",
                       help="temporal block per layer, repeated: R recurrent, A local attention")
    model.add_argument("--num-layers", type=int, help="number of residual blocks")
    model.add_argument("--hidden-size", type=int, help="model width")
    model.add_argument("--ffn-hidden-size", type=int, help="MLP width of each GeGLU branch")
    model.add_argument("--num-attention-heads", type=int, help="query heads of the local attention")
    model.add_argument("--kv-channels", type=int, help="attention head dimension")
    model.add_argument("--lru-width", type=int, help="RG-LRU width")
    model.add_argument("--rglru-num-heads", type=int, help="block-diagonal blocks of the RG-LRU gates")
    model.add_argument("--attention-window", type=int,
                       help="local attention window (keys per query, itself included)")
    model.add_argument("--seq-length", type=int, help="training sequence length (default: the preset's)")
    model.add_argument("--backend", choices=("local", "te"), default="local", help="layer implementation")
    model.add_argument(
        "--make-vocab-size-divisible-by", type=int, default=128,
        help="pad the embedding table to a multiple of this (and of the tensor-parallel size)",
    )

    par = parser.add_argument_group("parallelism")
    par.add_argument("--tensor-model-parallel-size", type=int, default=1)
    par.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    par.add_argument("--num-layers-per-virtual-pipeline-stage", type=int, default=None)
    par.add_argument("--decoder-first-pipeline-num-layers", type=int, default=None,
                     help="layers of the first pipeline stage (uneven stages)")
    par.add_argument("--decoder-last-pipeline-num-layers", type=int, default=None,
                     help="layers of the last pipeline stage (uneven stages)")
    par.add_argument("--sequence-parallel", action="store_true")
    par.add_argument("--use-distributed-optimizer", action="store_true")

    batch = parser.add_argument_group("batch and schedule")
    batch.add_argument("--micro-batch-size", type=int, default=1)
    batch.add_argument("--global-batch-size", type=int, default=None,
                       help="sequences per step, all ranks (default: micro-batch x data-parallel size)")
    batch.add_argument("--train-iters", type=int, default=None, help="optimizer steps")
    batch.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    batch.add_argument("--min-lr", type=float, default=0.0)
    batch.add_argument("--lr-warmup-iters", type=int, default=0)
    batch.add_argument("--lr-decay-iters", type=int, default=None, help="default: --train-iters")
    batch.add_argument("--lr-decay-style", choices=LR_DECAY_STYLES, default="cosine")
    batch.add_argument("--weight-decay", type=float, default=0.1)
    batch.add_argument("--clip-grad", type=float, default=1.0)
    batch.add_argument("--adam-beta1", type=float, default=0.9)
    batch.add_argument("--adam-beta2", type=float, default=0.95)
    batch.add_argument("--adam-eps", type=float, default=1e-8)
    batch.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    batch.add_argument("--seed", type=int, default=1234)

    recompute = parser.add_argument_group("activation recompute")
    recompute.add_argument("--recompute-granularity", choices=("full", "selective"), default=None)
    recompute.add_argument("--recompute-method", choices=("uniform", "block"), default=None)
    recompute.add_argument("--recompute-num-layers", type=int, default=None)

    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-path", nargs="+", default=None, metavar="[WEIGHT] PREFIX",
        help="indexed dataset prefix(es), optionally weighted: 'w1 p1 w2 p2'; omit for the "
        "embedded default run",
    )
    data.add_argument("--split", default="98,2,0", help="train,valid,test proportions")
    data.add_argument("--eod-mask-loss", action="store_true",
                      help="no loss on predictions made at end-of-document tokens")
    data.add_argument("--tokenizer",
                      help="tokenizer file or directory (default: the one recorded by preprocess)")
    data.add_argument("--data-cache-path", help="where dataset index caches go (default: beside the data)")
    data.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")

    ckpt = parser.add_argument_group("checkpoints")
    ckpt.add_argument("--save", help="checkpoint directory (default: ./runs/griffin-<time>)")
    ckpt.add_argument("--load", help="checkpoint directory to resume from")
    ckpt.add_argument("--finetune", action="store_true",
                      help="with --load: take the model weights only; optimizer, schedule, data "
                      "position and iteration start afresh")
    ckpt.add_argument("--save-interval", type=int, default=None,
                      help="steps between checkpoints (default: only at the end)")
    ckpt.add_argument("--no-save", action="store_true", help="write no checkpoint")
    ckpt.add_argument("--override-opt-param-scheduler", action="store_true",
                      help="on resume, follow this run's --lr / --min-lr / --lr-warmup-iters / "
                      "--lr-decay-* / --train-iters / --weight-decay from the checkpoint's step on")
    ckpt.add_argument("--use-checkpoint-opt-param-scheduler", action="store_true",
                      help="on resume, keep the checkpoint's learning-rate schedule whatever the "
                      "options say (without either flag, a different schedule is refused)")
    ckpt.add_argument("--no-checkpoint-hashes", action="store_true",
                      help="record and check only each checkpoint file's size, not its SHA-256 "
                      "(for checkpoints so large that hashing them takes minutes)")

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval-interval", type=int, default=1000)
    evaluation.add_argument("--eval-iters", type=int, default=10)

    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-interval", type=int, default=10)
    logs.add_argument("--tensorboard-dir", help="TensorBoard event directory")
    logs.add_argument("--wandb-project", help="log to this Weights & Biases project")
    logs.add_argument("--wandb-exp-name", help="W&B run name")
    _record_explicit(parser)
    parser.set_defaults(_option_dests=frozenset(
        action.dest for action in parser._actions if action.option_strings and action.dest != "help"
    ))


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _data_path_list(value) -> List[str]:
    """--data-path from the command line or a YAML list (one item per weight or prefix, kept
    whole, so a path may hold spaces), or a YAML string ('0.7 web 0.3 code', split on spaces
    unless the whole string names a dataset)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value] if os.path.isfile(f"{value}.bin") else value.split()
    return [str(item) for item in value]


def apply_config_file(args: argparse.Namespace) -> List[str]:
    """Values of the --config file for every option not given on the command line; returns
    the options the file set."""
    if not args.config:
        return []
    from ..recipes import load_recipe

    explicit = getattr(args, EXPLICIT, set())
    given = []
    for key, value in load_recipe(args.config).items():
        dest = key.replace("-", "_")
        if dest not in args._option_dests:
            raise ConfigError(
                f"{args.config}: key '{key}' is not a `griffin-megatron train` option; remove it "
                "or use an option name without its leading dashes."
            )
        given.append(dest)
        if dest not in explicit:
            setattr(args, dest, value)
    return given


def apply_defaults(args: argparse.Namespace, defaults: Dict[str, object], given: Iterable[str]) -> None:
    """Set `defaults` for options neither on the command line nor in `given` (the config file)."""
    explicit = getattr(args, EXPLICIT, set()) | set(given)
    for dest, value in defaults.items():
        if dest not in explicit:
            setattr(args, dest, value)


def finalize_arguments(args: argparse.Namespace) -> bool:
    """Merge the --config file and, without --data-path, the default run's settings into
    `args`, then check them. Returns whether this is the embedded default run."""
    given = apply_config_file(args)
    args.data_path = _data_path_list(args.data_path)
    default_run = args.data_path is None
    if default_run:
        from .default_run import SETTINGS

        apply_defaults(args, SETTINGS, given)
        if args.lr_warmup_iters is None:
            args.lr_warmup_iters = args.train_iters // 10
    check_arguments(args)
    return default_run


def same_directory(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None:
        return False
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_arguments(args: argparse.Namespace, world: Optional[int] = None) -> None:
    """Everything that can be checked before processes are grouped; one sentence per failure."""
    world = world_size() if world is None else world
    positive = ("micro_batch_size", "train_iters", "tensor_model_parallel_size",
                "pipeline_model_parallel_size", "log_interval", "eval_interval", "eval_iters",
                "make_vocab_size_divisible_by")
    for dest in positive:
        value = getattr(args, dest)
        if value is None and dest == "train_iters":
            raise ConfigError(
                "--train-iters is required with --data-path: give the number of optimizer steps."
            )
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{_option(dest)}={value!r} must be a positive integer.")
    for dest in ("save_interval", "global_batch_size", "lr_decay_iters", "seq_length"):
        value = getattr(args, dest)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{_option(dest)}={value!r} must be a positive integer.")
    if args.lr_warmup_iters < 0:
        raise ConfigError(f"--lr-warmup-iters={args.lr_warmup_iters} must not be negative.")
    decay_iters = args.lr_decay_iters or args.train_iters
    if args.lr_warmup_iters and args.lr_warmup_iters >= decay_iters:
        raise ConfigError(
            f"--lr-warmup-iters={args.lr_warmup_iters} must be below the decay length "
            f"({decay_iters} iterations, --lr-decay-iters or --train-iters); shorten the warmup."
        )
    if args.min_lr > args.lr:
        raise ConfigError(
            f"--min-lr={args.min_lr} is above --lr={args.lr}; the schedule decays from lr to min-lr."
        )
    model_parallel = args.tensor_model_parallel_size * args.pipeline_model_parallel_size
    if world % model_parallel:
        raise ConfigError(
            f"{world} processes cannot be split into tensor x pipeline groups of "
            f"{args.tensor_model_parallel_size} x {args.pipeline_model_parallel_size}; launch a "
            "multiple of their product."
        )
    data_parallel = world // model_parallel
    if args.global_batch_size is None:
        args.global_batch_size = args.micro_batch_size * data_parallel
    if args.global_batch_size % (args.micro_batch_size * data_parallel):
        raise ConfigError(
            f"--global-batch-size={args.global_batch_size} is not divisible by --micro-batch-size="
            f"{args.micro_batch_size} x data-parallel size {data_parallel}; each step must be a "
            "whole number of micro-batches per data-parallel rank."
        )
    try:
        split = parse_and_normalize_split(args.split)
    except (ValueError, AssertionError, ZeroDivisionError):
        split = None
    if split is None or len(split) != 3:
        raise ConfigError(
            f"--split={args.split!r} must be three non-negative proportions 'train,valid,test' "
            "with a positive sum, e.g. 98,2,0."
        )
    if split[0] == 0:
        raise ConfigError(
            f"--split={args.split!r} gives the training split no documents; give it a positive "
            "first proportion, e.g. 98,2,0."
        )
    if args.sequence_parallel and args.tensor_model_parallel_size == 1:
        raise ConfigError("--sequence-parallel needs --tensor-model-parallel-size > 1.")
    _check_logging_packages(args)
    if args.override_opt_param_scheduler and args.use_checkpoint_opt_param_scheduler:
        raise ConfigError(
            "--override-opt-param-scheduler and --use-checkpoint-opt-param-scheduler contradict "
            "each other; pass the one whose schedule the resumed run should follow."
        )
    if args.finetune and args.load is None:
        raise ConfigError("--finetune starts from the weights of --load; pass --load CHECKPOINT.")
    if args.load is not None and not os.path.exists(os.path.expanduser(args.load)):
        # `--save DIR --load DIR` is how Megatron-LM jobs resume; the first launch has no DIR yet.
        if not same_directory(args.load, args.save):
            raise InputFileError(
                f"--load {args.load} does not exist; pass a checkpoint or save directory."
            )


def _check_logging_packages(args: argparse.Namespace) -> None:
    """Missing logging packages fail here, on every rank, not later on the rank that logs."""
    import importlib.util

    needs = [("--tensorboard-dir", args.tensorboard_dir, "tensorboard",
              "pip install griffin-megatron[train]` or `pip install tensorboard"),
             ("--wandb-project", args.wandb_project, "wandb", "pip install wandb")]
    for option, value, package, install in needs:
        if value and importlib.util.find_spec(package) is None:
            raise MissingDependencyError(
                f"{option} needs the {package} package, which is not installed; install it with "
                f"`{install}` or drop {option}."
            )


def data_parallel_size(args: argparse.Namespace, world: Optional[int] = None) -> int:
    world = world_size() if world is None else world
    return world // (args.tensor_model_parallel_size * args.pipeline_model_parallel_size)
