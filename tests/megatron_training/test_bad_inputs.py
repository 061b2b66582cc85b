"""Bad input to the Megatron-loop entry point: one sentence on stderr and a non-zero exit,
before any process group or file exists."""

from __future__ import annotations

import subprocess
import sys


from tests.training.harness import environment

from .harness import REPO, requires_megatron_training

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
