"""The extrapolation study end to end, shortened: three models trained for a few steps, then
evaluated past 8x their training length on held-out text (slow: three training runs)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "extrapolation.py"


@pytest.mark.slow
def test_short_extrapolation_study(tmp_path):
    markdown = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(SCRIPT), "--train-iters", "3", "--train-length", "64",
                    "--eval-length", "512", "--held-out-files", "1", "--chunk-tokens", "128",
                    "--out-dir", str(tmp_path / "run"), "--markdown", str(markdown)],
                   check=True, timeout=1800, cwd=tmp_path)
    for name in ("griffin", "hawk", "attention"):
        result = json.loads((tmp_path / "run" / f"{name}-eval" / "evaluation.json").read_text())
        assert [(b["start"], b["end"]) for b in result["buckets"]] == [(0, 128), (128, 512)]
        assert all(b["tokens"] > 0 and math.isfinite(b["loss"]) for b in result["buckets"])
        assert result["settings"]["training_seq_length"] == 64
    assert (tmp_path / "run" / "extrapolation.png").stat().st_size > 0
    table = markdown.read_text()
    assert "| positions | griffin | hawk | attention |" in table and "| 128-512 |" in table
