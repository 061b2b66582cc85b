"""Bad input to the Megatron-loop entry point: one sentence on stderr and a non-zero exit,
before any process group or file exists (and before Megatron-LM prints its arguments)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.training.harness import environment

from .harness import requires_megatron_training

ENTRY = [sys.executable, "-m", "griffin_megatron.megatron_training"]


def _error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("error:") or "Traceback" in line]


def _run(command, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=300)


def test_megatron_core_without_the_training_loop(tmp_path):
    """megatron-core 0.16 / 0.17 (on the 3.11 leg this is the installed release; elsewhere the
    ModelBuilder API is hidden the way an old wheel lacks it)."""
    hide = "import sys; sys.modules['megatron.training.models'] = None; " \
           "from griffin_megatron.megatron_training.pretrain import run; " \
           "sys.exit(run(['--preset', 'griffin-tiny']))"
    done = _run([sys.executable, "-c", hide], tmp_path)
    assert done.returncode == 1
    errors = _error_lines(done.stderr)
    assert len(errors) == 1 and "does not ship Megatron-LM's training loop" in errors[0], done.stderr


@requires_megatron_training
def test_unknown_preset(tmp_path):
    done = _run([*ENTRY, "--preset", "griffin-huge"], tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "invalid choice: 'griffin-huge'" in errors[0], done.stderr


@requires_megatron_training
def test_heads_not_divisible_by_tensor_parallel(tmp_path):
    done = _run([*ENTRY, "--preset", "griffin-tiny", "--tensor-model-parallel-size", "3",
                 "--micro-batch-size", "1", "--train-iters", "1", "--mock-data",
                 "--tokenizer-type", "NullTokenizer", "--vocab-size", "320"], tmp_path)
    assert done.returncode == 2  # a GriffinConfigError (errors.py): the user's to fix
    errors = _error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    assert "not divisible by tensor_model_parallel_size=3" in errors[0], done.stderr
    assert not any(tmp_path.iterdir())  # nothing written


@requires_megatron_training
def test_visible_but_unusable_cuda(tmp_path):
    """This machine's torch cannot use CUDA; CUDA_VISIBLE_DEVICES=0 shows it a device."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine whose torch cannot use CUDA")
    done = subprocess.run([*ENTRY, "--preset", "griffin-tiny"], cwd=tmp_path,
                          env=environment(CUDA_VISIBLE_DEVICES="0"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = _error_lines(done.stderr)
    assert len(errors) == 1 and "NVIDIA devices are visible (CUDA_VISIBLE_DEVICES=0)" in errors[0]
    assert errors[0].endswith('run on the CPU on purpose with CUDA_VISIBLE_DEVICES="".')
    assert not any(tmp_path.iterdir())


@requires_megatron_training
@pytest.mark.parametrize("backend", ["local", "te"])
def test_tp_comm_overlap_is_refused(backend, tmp_path):
    done = _run([*ENTRY, "--preset", "griffin-tiny", "--backend", backend, "--tp-comm-overlap",
                 "--tensor-model-parallel-size", "2", "--sequence-parallel",
                 "--micro-batch-size", "1", "--train-iters", "1", "--mock-data",
                 "--tokenizer-type", "NullTokenizer", "--vocab-size", "320"], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = _error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: --tp-comm-overlap cannot be used with --backend {backend}")


# A run that would otherwise start: one process, mock data, a NullTokenizer.
TINY_RUN = ["--preset", "griffin-tiny", "--micro-batch-size", "1", "--train-iters", "1",
            "--tokenizer-type", "NullTokenizer", "--vocab-size", "320", "--seq-length", "32"]


def _refused_before_the_argument_dump(done, *words):
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    errors = _error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert "arguments ---" not in done.stdout  # Megatron-LM's ~850-line dump never started


@requires_megatron_training
def test_neither_data_path_nor_mock_data(tmp_path):
    done = _run([*ENTRY, *TINY_RUN, "--lr", "1e-3", "--distributed-backend", "gloo"], tmp_path)
    _refused_before_the_argument_dump(done, "--data-path", "--mock-data")
    assert not any(tmp_path.iterdir())


@requires_megatron_training
@pytest.mark.parametrize("importable, flags, expected", [
    pytest.param(True, [], True, id="extension-imports"),
    pytest.param(False, [], False, id="extension-missing"),
    pytest.param(True, ["--no-gradient-accumulation-fusion"], False, id="turned-off"),
])
def test_pretrain_args_take_the_fusion_rule(importable, flags, expected, monkeypatch):
    """Megatron-LM's parser on a (pretended) GPU: its default fusion is kept only where Apex's
    extension imports, in args and in the GriffinConfig built from them."""
    import types

    import torch
    from megatron.training.arguments import parse_args

    from griffin_megatron.device import FUSION_EXTENSION
    from griffin_megatron.megatron_training.arguments import (
        add_griffin_arguments,
        apply_preset,
        check_griffin_arguments,
    )
    from griffin_megatron.run_config import megatron_lm_settings

    fake = types.ModuleType(FUSION_EXTENSION) if importable else None
    monkeypatch.setitem(sys.modules, FUSION_EXTENSION, fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sys, "argv", ["pretrain", "--preset", "griffin-tiny",
                                      "--micro-batch-size", "1", *flags])
    args = parse_args(extra_args_provider=add_griffin_arguments)
    apply_preset(args)
    check_griffin_arguments(args)
    assert args.gradient_accumulation_fusion is expected
    args.params_dtype = torch.float32  # set by validate_args, which this test does not run
    assert megatron_lm_settings(args)["gradient_accumulation_fusion"] is expected


@requires_megatron_training
def test_no_learning_rate(tmp_path):
    done = _run([*ENTRY, *TINY_RUN, "--mock-data", "--distributed-backend", "gloo"], tmp_path)
    _refused_before_the_argument_dump(done, "--lr")


@requires_megatron_training
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_nccl_asked_for_without_cuda(tmp_path):
    done = _run([*ENTRY, *TINY_RUN, "--mock-data", "--lr", "1e-3",
                 "--distributed-backend", "nccl"], tmp_path)
    _refused_before_the_argument_dump(done, "--distributed-backend nccl", "no", "gloo")
