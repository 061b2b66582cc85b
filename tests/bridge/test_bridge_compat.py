"""The upstream Bridge bug griffin_megatron.compat.megatron_bridge works around, shown real:
ReplicatedMapping.hf_to_megatron at tensor-parallel size 2 over gloo calls
torch.cuda.current_device() and fails without CUDA; inside `conversion_on_cpu()` every rank
receives rank 0's tensor, and the method is Bridge's own again after the block. The diff in
patches/ applies to the installed release."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch

from tests.bridge.bridge_worker import replicated_mapping_broadcasts
from tests.parallel.harness import launch

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "patches" / "megatron-bridge-0.6.2-replicated-mapping-device.patch"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the bug is CPU-only")


@pytest.fixture(scope="module")
def broadcasts():
    return launch(replicated_mapping_broadcasts, 2)


def test_unfixed_bridge_fails_without_cuda(broadcasts):
    for rank in broadcasts:
        # A CUDA build of torch says "Found no NVIDIA driver", a CPU build "not compiled with CUDA".
        error = rank["unfixed"] or ""
        assert error.startswith(("RuntimeError", "AssertionError")), error
        assert "NVIDIA" in error or "CUDA" in error, error


def test_fixed_bridge_broadcasts_rank_zeros_tensor(broadcasts):
    assert [rank["fixed"] for rank in broadcasts] == [None, None]


def test_fix_is_undone_after_its_block(broadcasts):
    assert all(rank["restored"] for rank in broadcasts)


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the `patch` program")
def test_patch_applies_to_the_installed_release():
    if metadata.version("megatron-bridge") != "0.6.2":
        pytest.skip("the diff is against megatron-bridge 0.6.2")
    site = Path(importlib.util.find_spec("megatron.bridge").origin).parents[2]
    result = subprocess.run(
        ["patch", "--dry-run", "--batch", "-p1", "-d", str(site), "-i", str(PATCH)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
