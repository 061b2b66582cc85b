"""`--local-attention` choices that cannot be honoured are refused by `train` in one sentence,
before any process group, model or file exists: FlexAttention training without CUDA (PyTorch has
no FlexAttention backward on a CPU), and an explicit choice with the te backend, whose attention
is Transformer Engine's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.megatron_training.harness import requires_megatron_training

REPO = Path(__file__).resolve().parents[2]

FLEX_ON_CPU = ("--local-attention flex cannot train without CUDA: PyTorch has no FlexAttention "
               "backward on a CPU; use --local-attention blocked (or auto) on a CPU.")


def _train_argv(tmp_path, *extra):
    return ["train", "--preset", "griffin-tiny", *extra, "--train-iters", "2",
            "--data-path", str(tmp_path / "corpus"), "--save", str(tmp_path / "run")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, flex trains")
def test_flex_training_on_a_cpu_is_one_sentence_before_any_work(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("GRIFFIN_MEGATRON_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "griffin_megatron", *_train_argv(tmp_path, "--local-attention",
                                                                "flex")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"griffin-megatron train: error: {FLEX_ON_CPU}"], done.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


def test_an_explicit_choice_with_the_te_backend_is_refused(tmp_path, capsys, monkeypatch):
    """In-process: the same `main` the subprocess above runs."""
    from griffin_megatron.cli.main import main

    monkeypatch.delenv("GRIFFIN_MEGATRON_DEBUG", raising=False)
    status = main(_train_argv(tmp_path, "--local-attention", "blocked", "--backend", "te"))
    assert status == 2
    assert capsys.readouterr().err == (
        "griffin-megatron train: error: --local-attention blocked chooses the local backend's "
        "attention, but --backend te runs Transformer Engine's; drop --local-attention or use "
        "--backend local.\n")
    assert list(tmp_path.iterdir()) == []


@requires_megatron_training
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, flex trains")
def test_the_megatron_loop_refuses_flex_on_a_cpu_too(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "griffin_megatron.megatron_training", "--preset", "griffin-tiny",
         "--local-attention", "flex", "--micro-batch-size", "1", "--train-iters", "1",
         "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "320"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line or "Traceback" in line]
    assert len(errors) == 1 and FLEX_ON_CPU in errors[0], done.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []
