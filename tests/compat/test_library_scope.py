"""Library calls leave torch and Megatron as they found them; only entry points set up the process.

Seen from outside, in fresh processes: `count_parameters`, `from_hf`, a model checkpoint's save
and load and `build_model_chunks` (tests/compat/library_calls_worker.py) leave every
torch.cuda function and class that griffin_megatron.compat can stand in for, Megatron's
RNG-state functions, the distributed optimizer's methods and the torch-function mode stack as
they were, create no RNG tracker and register no fork hook. The command line's `train` does
register its fork hook, and another command does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("library_calls_worker.py")
LIBRARY_CALLS = ("count_parameters", "from_hf", "save_model_checkpoint", "load_model_checkpoint",
                 "build_model_chunks")


def run_python(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    result = run_python(str(WORKER), str(tmp_path_factory.mktemp("library")))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("call", LIBRARY_CALLS)
def test_library_call_leaves_torch_and_megatron_as_they_were(report, call):
    assert report["changed"][call] == []


@pytest.mark.parametrize("call", LIBRARY_CALLS)
def test_library_call_creates_no_rng_tracker(report, call):
    """None of these draws random numbers, so Megatron's tracker is not created for them."""
    assert report["tracker"][call] == "none"


def test_library_calls_register_no_fork_hook(report):
    ours = [hook for hook in report["fork_hooks"] if hook.startswith("griffin_megatron")]
    assert ours == []


def test_the_library_calls_did_their_work(report):
    """The checks above are about calls that worked: the reloaded model answers like the saved
    one."""
    assert report["reloaded logits equal"] is True


# Calls the command line's main in a process whose fork hooks are recorded first.
CLI_WITH_FORK_SPY = """
import json, sys
from tests.compat.fork_spy import record_fork_hooks
hooks = record_fork_hooks()
from griffin_megatron.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "hooks": hooks}))
"""
WRITER_HOOK = "griffin_megatron.checkpoint.writes._die_with_parent"


def cli_with_fork_spy(*args: str) -> dict:
    result = run_python("-c", CLI_WITH_FORK_SPY, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_command_registers_the_writer_fork_hook_once(tmp_path):
    # A data path that does not exist stops the run with one sentence, after main's set-up.
    out = cli_with_fork_spy("train", "--data-path", str(tmp_path / "missing"),
                            "--train-iters", "1")
    assert out["status"] == 2
    assert out["hooks"].count(WRITER_HOOK) == 1


def test_other_commands_leave_fork_hooks_alone():
    out = cli_with_fork_spy("info", "--preset", "griffin-tiny")
    assert out["status"] == 0
    assert WRITER_HOOK not in out["hooks"]
