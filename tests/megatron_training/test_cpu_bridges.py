"""Every CPU bridge and upstream fix of the Megatron-loop entry point fails without it and works
with it (checked in one fresh process by bridge_checks.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.training.harness import environment

from .harness import REPO, requires_megatron_training

pytestmark = [
    requires_megatron_training,
    pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU bridges stay off with CUDA"),
]


@pytest.fixture(scope="module")
def checks():
    done = subprocess.run([sys.executable, "-m", "tests.megatron_training.bridge_checks"],
                          cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name, fails_with", [
    ("initialize_megatron", "AssertionError"),  # "Megatron requires CUDA."
    ("model_parallel_groups", "AssertionError"),  # no groups without devices
    ("rng_tracker_seed", "Exception"),  # "cuda rng state model-parallel-rng is not added"
    ("cuda_rng_state", "RuntimeError"),  # no NVIDIA driver
    ("device_arch_version", "RuntimeError"),
    ("compiled_dataset_helpers", "SystemExit"),  # make finds no Makefile in the wheel
    ("dp_reshardable_load", "RuntimeError"),  # in-place copy into a leaf that requires grad
])
def test_fails_without_and_works_with(checks, name, fails_with):
    assert checks[name] == {"without": fails_with, "with": "ok"}
