"""What Megatron-LM's parser (megatron-core 0.19) leaves for a run to trip over minutes later,
settled right after parsing, before Megatron's own checks and its argument dump:

- the process-group backend: NCCL by default, which fails on a machine without CUDA after the
  whole argument dump; without CUDA the run takes gloo, unless NCCL was asked for by name;
- `--eval-interval`: unset by default, and then divided by when the validation set is sized
  (`TypeError` after start-up); unset means Megatron-LM's long-standing default, 1000;
- the data: neither `--data-path` (nor a per-split or args-file form) nor `--mock-data` sends
  `None` into the dataset builder as a path; `--lr`: unset reaches the optimizer as `None`.

Each refusal is one sentence (ConfigError).
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import torch

from ..errors import ConfigError

# Megatron-LM's default before its 0.19 parser left the option unset (arguments.py, 0.9-0.18).
DEFAULT_EVAL_INTERVAL = 1000
# Every Megatron-LM option that names training data (utils.get_blend_and_blend_per_split).
DATA_OPTIONS = ("data_path", "data_args_path", "train_data_path", "valid_data_path",
                "test_data_path", "per_split_data_args_path")


def settle_arguments(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """`argv`: the command line as given, to tell an explicit option from a default."""
    choose_backend(args, argv)
    if args.eval_interval is None:
        args.eval_interval = DEFAULT_EVAL_INTERVAL
    if not args.mock_data and all(getattr(args, name, None) is None for name in DATA_OPTIONS):
        raise ConfigError(
            "no training data given: pass --data-path PREFIX (a dataset written by "
            "`griffin-megatron preprocess`), or --mock-data to train on synthetic tokens."
        )
    if args.lr is None:
        raise ConfigError("--lr is not set; pass the peak learning rate, e.g. --lr 3e-4.")


def choose_backend(args: argparse.Namespace, argv: Sequence[str]) -> None:
    if torch.cuda.is_available() or args.distributed_backend != "nccl":
        return
    named = any(arg == "--distributed-backend" or arg.startswith("--distributed-backend=")
                for arg in argv)
    if named:
        raise ConfigError(
            "--distributed-backend nccl needs CUDA GPUs and this machine has none; pass "
            "--distributed-backend gloo to train on CPUs."
        )
    args.distributed_backend = "gloo"
    if int(os.environ.get("RANK", "0")) == 0:
        print("no CUDA GPU: the processes communicate over gloo (--distributed-backend gloo)",
              flush=True)
