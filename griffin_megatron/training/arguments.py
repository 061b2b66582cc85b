"""`griffin-megatron train` options: the rows of `griffin_megatron.options` (Megatron-LM's names
where Megatron-LM has the option, ours for Griffin's architecture), plus `--config` (a shipped
recipe name or a YAML file) whose keys are the same names without the leading dashes.
Precedence: command line > --config file > the table's defaults (and, when no --data-path is
given, the embedded default run's settings, see default_run.py).

`finalize_arguments` merges those sources (`merge_arguments`), checks everything that can be
checked before any process group exists, each failure one sentence, and returns the run's
settings as one typed object (run_config.RunConfig) with the GriffinConfig they were checked with.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Set, Tuple

from .. import options
from ..errors import ConfigError, InputFileError, MissingDependencyError
from ..output_paths import check_creatable_directory, same_directory

if TYPE_CHECKING:  # the parser is built without them, so `train --help` stays fast
    from ..config import GriffinConfig
    from ..run_config import RunConfig


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="NAME_OR_FILE.yaml",
        help="a shipped recipe name (e.g. griffin-14b) or a YAML file of options (keys are these "
        "option names without dashes); the command line overrides it",
    )
    # Without argparse's defaults the parsed namespace holds only the options typed on the
    # command line, so a --config file cannot override one that was typed with its default's
    # value; merge_arguments applies the defaults.
    options.add_to_parser(parser, defaults=False)


def typed_options(args: argparse.Namespace) -> Set[str]:
    """The dests of the options given on the command line (before merge_arguments)."""
    return {option.dest for option in options.OPTIONS if hasattr(args, option.dest)}


def _data_path_list(value) -> List[str]:
    """--data-path from the command line or a YAML list (one item per weight or prefix, kept
    whole, so a path may hold spaces), or a YAML string ('0.7 web 0.3 code', split on spaces
    unless the whole string names a dataset)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value] if os.path.isfile(f"{value}.bin") else value.split()
    return [str(item) for item in value]


def apply_config_file(args: argparse.Namespace, typed: Set[str]) -> List[str]:
    """Values of the --config file for every option not given on the command line (`typed`);
    returns the options the file set."""
    if not args.config:
        return []
    from ..recipes import load_recipe

    given = []
    # Recipe keys are the rows of `options`, so every key names an option of this parser.
    for key, value in load_recipe(args.config).items():
        dest = key.replace("-", "_")
        given.append(dest)
        if dest not in typed:
            setattr(args, dest, value)
    return given


def apply_defaults(args: argparse.Namespace, defaults: Dict[str, object],
                   kept: Iterable[str]) -> None:
    """Set `defaults` for the options not in `kept` (given on the command line or in the file)."""
    kept = set(kept)
    for dest, value in defaults.items():
        if dest not in kept:
            setattr(args, dest, value)


def merge_arguments(args: argparse.Namespace) -> bool:
    """Complete `args` as parsed (the options typed on the command line) with, below them, the
    --config file, then without --data-path the default run's settings, then the table's
    defaults. Returns whether this is the embedded default run."""
    typed = typed_options(args)
    given = apply_config_file(args, typed)
    apply_defaults(args, options.defaults(), typed | set(given))
    args.data_path = _data_path_list(args.data_path)
    default_run = args.data_path is None
    if default_run:
        from .default_run import SETTINGS

        apply_defaults(args, SETTINGS, typed | set(given))
        if args.lr_warmup_iters is None:
            args.lr_warmup_iters = args.train_iters // 10
    return default_run


def finalize_arguments(args: argparse.Namespace) -> Tuple["RunConfig", "GriffinConfig"]:
    """Merge the --config file and, without --data-path, the default run's settings into
    `args` (merge_arguments), then check them. Returns the run's settings and the GriffinConfig
    they were checked with (the preset's vocabulary: the loop swaps in the tokenizer's)."""
    from ..run_config import RunConfig

    default_run = merge_arguments(args)
    config = check_arguments(args)
    return RunConfig.from_options(args, config, default_run), config


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _check_option_values(args: argparse.Namespace) -> None:
    """Each option's own bounds (the `minimum` of its row)."""
    if args.train_iters is None:
        raise ConfigError(
            "--train-iters is required with --data-path: give the number of optimizer steps."
        )
    for option in options.OPTIONS:
        value = getattr(args, option.dest)
        if option.minimum is None or value is None:
            continue
        if option.kind is int and (not isinstance(value, int) or value < option.minimum):
            what = "a positive integer" if option.minimum == 1 else f"an integer >= {option.minimum}"
            raise ConfigError(f"{option.flag}={value!r} must be {what}.")
        if option.kind is float and value < option.minimum:
            raise ConfigError(f"{option.flag}={value!r} must not be below {option.minimum}.")


def check_arguments(args: argparse.Namespace, world: Optional[int] = None) -> "GriffinConfig":
    """Everything that can be checked before processes are grouped; one sentence per failure.
    The parallel layout is checked by building the run's GriffinConfig (the preset's vocabulary
    stands in for the tokenizer's), so a bad layout stops here, before any process group or
    model exists. Returns that config."""
    world = world_size() if world is None else world
    _check_option_values(args)
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
    from ..config import check_batch
    from ..context_parallel.layout import check_context_parallel_layout
    from ..modules.flex_attention import check_local_attention_choice
    from ..run_config import build_model_config

    config = build_model_config(args)
    check_context_parallel_layout(config, args.backend)
    check_local_attention_choice(args.local_attention, args.backend, training=True)
    args.global_batch_size = options.global_batch_size(args, world)
    check_batch(config, world, args.micro_batch_size, args.global_batch_size)
    _check_split(args.split)
    _check_logging_packages(args)
    if args.override_opt_param_scheduler and args.use_checkpoint_opt_param_scheduler:
        raise ConfigError(
            "--override-opt-param-scheduler and --use-checkpoint-opt-param-scheduler contradict "
            "each other; pass the one whose schedule the resumed run should follow."
        )
    # --save is checked with the other --save rules (checkpoint.save_directory).
    for option, path in (("--tensorboard-dir", args.tensorboard_dir),
                         ("--data-cache-path", args.data_cache_path)):
        if path is not None:
            check_creatable_directory(path, option)
    if args.finetune and args.load is None:
        raise ConfigError("--finetune starts from the weights of --load; pass --load CHECKPOINT.")
    if args.load is not None and not os.path.exists(os.path.expanduser(args.load)):
        # `--save DIR --load DIR` is how Megatron-LM jobs resume; the first launch has no DIR yet.
        if not same_directory(args.load, args.save):
            raise InputFileError(
                f"--load {args.load} does not exist; pass a checkpoint or save directory."
            )
    return config


def check_split_format(split: str) -> list:
    """The normalised proportions of a --split string (train and evaluate), or one sentence."""
    from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split

    try:
        proportions = parse_and_normalize_split(split)
    except (ValueError, AssertionError, ZeroDivisionError):
        proportions = None
    # Megatron reads only the digits ('abc' is 0,0,0) and divides by their sum: NaN for zero.
    if proportions is None or len(proportions) != 3 or not all(map(math.isfinite, proportions)):
        raise ConfigError(
            f"--split={split!r} must be three non-negative proportions 'train,valid,test' "
            "with a positive sum, e.g. 98,2,0."
        )
    return proportions


def _check_split(split: str) -> None:
    proportions = check_split_format(split)
    if proportions[0] == 0:
        raise ConfigError(
            f"--split={split!r} gives the training split no documents; give it a positive "
            "first proportion, e.g. 98,2,0."
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

