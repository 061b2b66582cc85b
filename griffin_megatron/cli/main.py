"""`griffin-megatron <command>`: dispatch to one module per subcommand.

User errors (griffin_megatron.errors.UserError: bad arguments, missing files, impossible layouts,
damaged checkpoints) print one sentence on stderr and exit with status 2; set
GRIFFIN_MEGATRON_DEBUG=1 to see their traceback too. Any other exception is a bug (ours or a
dependency's) and keeps its traceback (status 1).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from .. import compat
from ..errors import UserError

# subcommand -> module under griffin_megatron.cli providing add_arguments(parser) and run(args)
COMMANDS = {
    "convert": ("convert", "convert checkpoints between HuggingFace and Megatron formats"),
    "info": ("info", "print a model's architecture and parameter counts"),
    "plan": ("plan", "check a recipe's parallel layout; per-GPU memory and FLOPs per step"),
    "preprocess": ("preprocess", "tokenize raw text into a Megatron indexed dataset"),
    "train": ("train", "pretrain Hawk / Griffin (no data arguments: a tiny demo run)"),
    "generate": ("generate", "continue a text prompt with a checkpoint or HF model"),
    "evaluate": ("evaluate", "loss and perplexity by position, in the memory of one chunk"),
    "lm-eval": ("lm_evaluation", "lm-evaluation-harness tasks on a checkpoint (the eval extra)"),
}
# The commands that run a model: they refuse visible NVIDIA devices that torch cannot use
# (device.check_cuda_usable) rather than run on the CPU unnoticed.
RUNS_A_MODEL = ("train", "generate", "evaluate", "lm-eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="griffin-megatron",
        description="Hawk and Griffin (De et al. 2024) on Megatron-Core.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"griffin_megatron.cli.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def _quiet_third_party_warnings() -> None:
    # Megatron-Core warns on import about optional fused kernels (Apex, TE) that a CPU run
    # does not need; the CLI keeps its output for the user's own results.
    warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
    warnings.filterwarnings("ignore", message="Apex is not installed.*")
    warnings.filterwarnings("ignore", message="full scope is deprecated.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="When using async grad allreduce.*")
    # megatron-core >= 0.19 logs "on rank 0 only" even before a process group exists, and warns
    # when it cannot tell the rank; commands read their datasets before they start one.
    warnings.filterwarnings("ignore", message="Could not determine rank from torch.distributed.*")
    # A CUDA build of torch on a machine without a GPU logs "No CUDA runtime is found" when
    # Megatron imports torch.utils.cpp_extension; nothing here compiles extensions.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def main(argv=None) -> int:
    _quiet_third_party_warnings()
    args = build_parser().parse_args(argv)
    # The process-wide settings of a run (every library call scopes its own to the call).
    compat.install()
    if args.command == "train":
        from ..checkpoint.writes import forked_writers_die_with_parent

        forked_writers_die_with_parent()
    try:
        if args.command in RUNS_A_MODEL:
            from ..device import check_cuda_usable

            check_cuda_usable()
        # Megatron's tensor-parallel forward asks torch.cuda for the current device.
        with compat.cuda_stand_ins_on_cpu():
            result = args._run(args)
    except UserError as error:
        if os.environ.get("GRIFFIN_MEGATRON_DEBUG") == "1":
            raise
        message = error.args[0] if error.args else str(error)
        print(f"griffin-megatron {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Training handles SIGINT itself (saves, exits 0); this is Ctrl-C anywhere else.
        print(f"griffin-megatron {args.command}: interrupted.", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
