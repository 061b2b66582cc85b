"""Running Megatron-LM's pretrain() for Griffin and `griffin-megatron train` as users do
(torchrun / the command line, on CPUs over gloo), on the same data, seed and settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from tests.training.harness import environment, losses as our_losses  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
# Megatron-LM's training log line (training.training_log).
MEGATRON_LOSS = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?\| lm loss: (\S+) \|")

ITERATIONS = 6
# The tiny model and schedule, spelled for each loop: 4 layers (RRAR) so that two pipeline
# stages get two each; Megatron-LM's defaults (linear decay, weight decay 0.01, beta2 0.999,
# split 969,30,1) set to ours.
SHARED = ["--preset", "PRESET", "--num-layers", "4", "--seq-length", "64",
          "--micro-batch-size", "2", "--global-batch-size", "8", "--lr", "3e-3",
          "--lr-warmup-iters", "1", "--make-vocab-size-divisible-by", "64", "--log-interval", "1",
          "--eval-iters", "1", "--eval-interval", "1000", "--split", "98,2,0", "--seed", "1234"]
MEGATRON_ONLY = ["--lr-decay-style", "cosine", "--weight-decay", "0.1", "--adam-beta2", "0.95",
                 "--clip-grad", "1.0", "--distributed-backend", "gloo",
                 "--calculate-per-token-loss", "--ckpt-format", "torch_dist",
                 "--tokenizer-type", "HuggingFaceTokenizer"]


def has_megatron_training_models() -> bool:
    from griffin_megatron.compat import megatron_core_version

    try:
        import megatron.training.models.base  # noqa: F401
    except ImportError:
        return False
    return megatron_core_version() >= (0, 19)


requires_megatron_training = pytest.mark.skipif(
    not has_megatron_training_models(),
    reason="this megatron-core ships no megatron.training.models (ModelBuilder API, >= 0.19); "
    "the Python 3.12 CI leg runs these tests",
)


def shared(preset: str) -> List[str]:
    return [preset if a == "PRESET" else a for a in SHARED]


def run_megatron(args: List[str], cwd: Path, nproc: int = 1, timeout: int = 900
                 ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               str(nproc), "-m", "griffin_megatron.megatron_training", *args]
    return subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=timeout)


def pretrain(preset: str, data_prefix: Path, cwd: Path, extra: List[str], nproc: int = 1
             ) -> subprocess.CompletedProcess:
    args = [*shared(preset), *MEGATRON_ONLY, "--data-path", str(data_prefix),
            "--tokenizer-model", str(data_prefix.parent), "--train-iters", str(ITERATIONS), *extra]
    done = run_megatron(args, cwd, nproc)
    assert done.returncode == 0, (done.stdout[-3000:] + done.stderr[-5000:])
    return done


def megatron_losses(output: str) -> Dict[int, float]:
    return {int(i): float(v) for i, v in MEGATRON_LOSS.findall(output)}


def as_printed(value: float) -> float:
    """A loss as both loops print it (6 decimals of mantissa)."""
    return float(f"{value:.6E}")


def megatron_printed_reference(ours: Dict[int, float], first: int) -> Dict[int, float]:
    """What Megatron-LM prints for our per-iteration losses: its first logged iteration of a
    process is printed without resetting the accumulators (training_log, "On first iteration,
    log stats but don't reset"), so with --log-interval 1 the line after it shows the mean of
    both iterations; every later line shows its own iteration."""
    printed = _Printed(ours)
    printed[first + 1] = (ours[first] + ours[first + 1]) / 2
    printed.averaged = first + 1
    return printed


class _Printed(dict):
    """Per-iteration losses; `averaged` names the iteration whose line is a two-step mean."""

    averaged = None
