"""The RG-LRU kernels compile for sm_90 without register spills, checked without a GPU.

Runs benchmarks/rglru_compile_check.py in a subprocess without TRITON_INTERPRET (this process
has it set on CPU machines, which makes Triton's own jit helpers uncompilable). It checks the
installed Triton, so each CI leg checks the Triton its torch pins: every kernel's launches as
the host code makes them, with the launcher's divisibility hints and without, and the default
candidates' registers against the schedule rule's table (`schedule.REGISTERS`).
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
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "rglru_compile_check.py"), *flags],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_candidates_compile_for_sm90_without_spills():
    run_check("--quick")


@pytest.mark.slow
def test_all_candidates_compile_for_sm90_without_spills():
    run_check("--fp32")
