"""`griffin-megatron evaluate --local-attention flex` on a CPU prints the loss that
`--local-attention blocked` prints (the checkpoint does not record the choice, so one saved
model loads under either), each run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.checkpoints import convert_to_checkpoint, write_hf_dir
from tests.fixtures.word_tokenizers import random_text

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    hf_dir = tmp_path_factory.mktemp("hf")
    write_hf_dir(hf_dir)
    directory = tmp_path_factory.mktemp("ckpt") / "model"
    convert_to_checkpoint(hf_dir, directory)
    return directory


def _evaluate(ckpt, text, choice, tmp_path):
    out = tmp_path / choice
    done = subprocess.run(
        [sys.executable, "-m", "griffin_megatron", "evaluate", "--load", str(ckpt),
         "--text-files", str(text), "--seq-length", "300", "--chunk-tokens", "70", "--no-plot",
         "--local-attention", choice, "--output-dir", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
             "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads((out / "evaluation.json").read_text())


def test_flex_prints_the_loss_of_blocked(ckpt, tmp_path):
    text = tmp_path / "doc.txt"
    text.write_text(random_text(400, seed=3))  # past the window (8) and several chunks
    flex_out, flex = _evaluate(ckpt, text, "flex", tmp_path)
    blocked_out, blocked = _evaluate(ckpt, text, "blocked", tmp_path)
    assert "local attention: flex (chosen with --local-attention)" in flex_out
    assert "local attention: blocked (chosen with --local-attention)" in blocked_out
    assert flex["tokens"] == blocked["tokens"] > 300
    assert flex["loss"] == pytest.approx(blocked["loss"], rel=1e-5)
    for a, b in zip(flex["buckets"], blocked["buckets"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    # The printed table (the user's view) is the same line for line, at its printed precision.
    table = [line for line in flex_out.splitlines() if "local attention" not in line
             and not line.startswith("wrote")]
    assert table == [line for line in blocked_out.splitlines() if "local attention" not in line
                     and not line.startswith("wrote")]
