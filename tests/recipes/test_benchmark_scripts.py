"""The GPU validation's CPU-runnable parts: the throughput script end to end on tiny models, the
shell script's syntax, and collection of the CUDA-marked tests it runs."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)


def test_gpu_validate_script_parses():
    assert run("bash", "-n", "benchmarks/gpu_validate.sh").returncode == 0


def test_throughput_script_runs_on_cpu(tmp_path):
    markdown = tmp_path / "results.md"
    result = run(sys.executable, "benchmarks/train_throughput.py", "--device", "cpu", "--tiny",
                 "--seq-lengths", "64", "--steps", "1", "--warmup", "1",
                 "--markdown", str(markdown), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    text = markdown.read_text()
    assert "### Training throughput" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| griffin-tiny", "| gpt (global attention)"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "64" and float(cells[5].replace(",", "")) > 0  # seq, tokens/s


def test_cuda_tests_collect_on_cpu():
    result = run(sys.executable, "-m", "pytest", "tests", "-m", "cuda", "--collect-only", "-q",
                 "-p", "no:cacheprovider", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "tests/recipes/test_activation_memory_gpu.py::test_activation_model_matches_the_gpu" in result.stdout
    assert "tests/ops/test_rglru_triton.py" in result.stdout
