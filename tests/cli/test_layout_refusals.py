"""Pipeline layouts that do not fit the depth are refused by `train` in one sentence, before any
process group or model exists (issue: a 5-layer first stage on a 3-layer preset used to train a
5-layer model recorded as 3 layers; PP=2 on 1 or 3 layers ended in Megatron's AssertionError)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "first stage deeper than the model": (
        ["--decoder-first-pipeline-num-layers", "5"],
        "num_layers=3 cannot be split into 5 (first stage) and 1 more stage(s)"),
    "three layers on two stages": (["--num-layers", "3"],
                                   "num_layers=3 is not divisible by pipeline_model_parallel_size=2"),
    "one layer on two stages": (["--num-layers", "1", "--block-pattern", "R"],
                                "num_layers=1 is not divisible by pipeline_model_parallel_size=2"),
}


@pytest.mark.parametrize("case", CASES)
def test_pipeline_stages_are_checked_against_the_depth(case, tmp_path):
    extra, message = CASES[case]
    save = tmp_path / "run"
    # WORLD_SIZE=2 as torchrun would set it: the check runs before any process group is formed.
    env = {**os.environ, "PYTHONPATH": str(REPO), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    env.pop("GRIFFIN_MEGATRON_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "griffin_megatron", "train", "--preset", "griffin-tiny",
         "--pipeline-model-parallel-size", "2", *extra, "--train-iters", "2",
         "--data-path", str(tmp_path / "corpus"), "--save", str(save)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("griffin-megatron train: error: the layout breaks rule 'layers/pp': ")
    assert message in error and error.endswith(".")
    assert not save.exists()
