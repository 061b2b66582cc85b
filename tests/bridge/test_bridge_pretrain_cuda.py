"""Bridge's pretrain() trains a tiny Griffin built by GriffinModelProvider, configured by our
recipe function. Bridge's training loop initialises NCCL unconditionally
(megatron/bridge/training/initialize.py), so this runs on a CUDA machine only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

TINY_RECIPE = """\
preset: griffin-tiny
backend: local
seq-length: 64
tensor-model-parallel-size: 1
pipeline-model-parallel-size: 1
sequence-parallel: false
use-distributed-optimizer: false
micro-batch-size: 2
global-batch-size: 2
train-iters: 3
lr: 1.0e-03
min-lr: 1.0e-04
lr-warmup-iters: 1
lr-decay-style: cosine
weight-decay: 0.1
adam-beta1: 0.9
adam-beta2: 0.95
clip-grad: 1.0
bf16: true
seed: 1234
save-interval: 1000
eval-interval: 1000
eval-iters: 1
log-interval: 1
"""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Bridge's pretrain() needs CUDA (NCCL)")
def test_bridge_pretrain_runs_three_iterations(tmp_path):
    recipe = tmp_path / "griffin-tiny-bridge.yaml"
    recipe.write_text(TINY_RECIPE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
         str(ROOT / "tests" / "bridge" / "pretrain_tiny.py"), str(recipe), str(tmp_path / "run")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "BRIDGE PRETRAIN DONE" in done.stdout, output[-5000:]
    losses = [float(v) for v in re.findall(r"lm loss:\s*([0-9.eE+-]+)", output)]
    assert len(losses) >= 3 and all(torch.isfinite(torch.tensor(losses))), output[-5000:]
