"""benchmarks/rglru.py as gpu_validate.sh calls it: the CPU dry run and the refusal without CUDA."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rglru.py"


def run(*args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_tiny_cpu_run_prints_and_appends_one_row_per_shape_and_pass(tmp_path):
    table = tmp_path / "table.md"
    table.write_text("earlier content\n")
    result = run("--device", "cpu", "--tiny", "--repeats", "1", "--markdown", str(table))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| \S+-tiny \|", line)]
    assert [(r.split("|")[1].strip(), r.split("|")[6].strip()) for r in rows] == [
        ("400M-tiny", "fwd"), ("400M-tiny", "bwd"), ("14B-tiny", "fwd"), ("14B-tiny", "bwd")]
    for row in rows:
        ms, gbps = (float(cell) for cell in row.split("|")[7:9])
        assert ms > 0 and gbps > 0
    written = table.read_text()
    assert written.startswith("earlier content\n") and all(row in written for row in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_a_gpu_is_one_sentence_and_exit_2(tmp_path):
    table = tmp_path / "table.md"
    result = run("--device", "cuda", "--markdown", str(table))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--device cpu --tiny" in result.stderr
    assert not table.exists()
