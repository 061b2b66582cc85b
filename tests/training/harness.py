"""Running `griffin-megatron train` as users do (a subprocess, torchrun for several ranks) and
reading its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
LOSS_LINE = re.compile(r"^iteration\s+(\d+)/\d+ \|.*\| lm loss: (\S+) \|", re.MULTILINE)
VALIDATION_LINE = re.compile(r"^validation at iteration (\d+) \| lm loss: (\S+) \|", re.MULTILINE)

# The tiny model and batch of these tests (4 layers, so that two pipeline stages get two each).
TINY = ["--preset", "griffin-tiny", "--num-layers", "4", "--seq-length", "64",
        "--micro-batch-size", "2", "--global-batch-size", "8", "--lr", "3e-3",
        "--lr-warmup-iters", "1", "--make-vocab-size-divisible-by", "64", "--log-interval", "1",
        "--eval-iters", "1", "--eval-interval", "1000"]


def environment(**extra: str) -> Dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}
    env.pop("GRIFFIN_MEGATRON_DEBUG", None)
    return env


INSTRUMENTED = str(Path(__file__).with_name("instrumented_train.py"))


def train_command(args: List[str], nproc: int = 1, instrumented: bool = False) -> List[str]:
    """The command line of `griffin-megatron train` (through tests/training/instrumented_train.py,
    which injects the faults its environment variables ask for, with instrumented=True)."""
    entry = [INSTRUMENTED] if instrumented else ["-m", "griffin_megatron"]
    if nproc == 1:
        return [sys.executable, *entry, "train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(nproc), *entry, "train", *args]


def run_train(args: List[str], cwd: Path, nproc: int = 1, timeout: int = 300,
              env: Optional[Dict[str, str]] = None,
              instrumented: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(args, nproc, instrumented), cwd=cwd,
                          env=env or environment(), capture_output=True, text=True,
                          timeout=timeout)


def session_processes(session: int) -> List[int]:
    """Live processes of a session (a run started with start_new_session=True, whose leader
    pid is `session`)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        alive.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return alive


def staging_directories(save: Path) -> List[Path]:
    return sorted(save.glob(".*.partial-*"))


def run_cli(args: List[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "griffin_megatron", *args], cwd=cwd,
                          env=environment(), capture_output=True, text=True, timeout=timeout)


def losses(output: str) -> Dict[int, float]:
    return {int(i): float(v) for i, v in LOSS_LINE.findall(output)}


def validation_losses(output: str) -> Dict[int, float]:
    return {int(i): float(v) for i, v in VALIDATION_LINE.findall(output)}


def snapshot(*roots: Path) -> Dict[Path, bytes]:
    """Every file under the roots with its bytes (to show a failed run changed nothing)."""
    files = {}
    for root in roots:
        if root.is_file():
            files[root] = root.read_bytes()
        elif root.is_dir():
            files.update({p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})
    return files


def model_weights(checkpoint: Path) -> Dict[str, "torch.Tensor"]:
    """The full model weights of a checkpoint (read in this single process)."""
    from griffin_megatron.checkpoint.model import build_model_from_checkpoint

    model = build_model_from_checkpoint(checkpoint)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()
            if not name.endswith("_extra_state")}
