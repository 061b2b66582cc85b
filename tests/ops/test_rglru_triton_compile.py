"""The RG-LRU kernels compile for sm_90 without register spills, checked without a GPU.

Runs griffin_megatron.ops.rglru.triton_compile_check in a subprocess without TRITON_INTERPRET
(this process has it set on CPU machines, which makes Triton's own jit helpers uncompilable).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton.backends.nvidia.compiler", reason="Triton without its NVIDIA backend")
REPO_ROOT = Path(__file__).resolve().parents[2]


def run_check(*flags):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "griffin_megatron.ops.rglru.triton_compile_check", *flags],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_candidates_compile_for_sm90_without_spills():
    run_check("--first-candidates")


@pytest.mark.slow
def test_all_candidates_compile_for_sm90_without_spills():
    run_check("--fp32")
