"""The RG-LRU kernels compile for sm_90 without register spills, checked without a GPU.

Runs benchmarks/rglru_compile_check.py in a subprocess without TRITON_INTERPRET (this process
has it set on CPU machines, which makes Triton's own jit helpers uncompilable). It checks the
installed Triton, so each CI leg checks the Triton its torch pins: every kernel's launches as
the host code makes them, with the launcher's divisibility hints and without, and the default
candidates' registers against the schedule rule's table (`schedule.REGISTERS`).
"""

import importlib.util
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


def load_check_module():
    spec = importlib.util.spec_from_file_location(
        "rglru_compile_check", REPO_ROOT / "benchmarks" / "rglru_compile_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ptxas_report_is_read_field_by_field():
    """The report ptxas -v printed for the old (32, 8) sequential forward as launched by triton
    3.6.0 (ptxas 12.8): the spill sits on its own line and must not read as zero."""
    report = (
        "ptxas info    : 28 bytes gmem\n"
        "ptxas info    : Compiling entry function 'rglru_fwd_kernel' for 'sm_90a'\n"
        "ptxas info    : Function properties for rglru_fwd_kernel\n"
        "    8 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads\n"
        "ptxas info    : Used 80 registers, used 1 barriers, 8 bytes cumulative stack size\n"
    )
    usage = load_check_module().parse_ptxas_log(report)
    assert usage == dict(registers=80, stack=8, stores=12, loads=8)
