"""The fault matrix, from the outside as a user meets it: signals to the whole process group
(what Ctrl-C, torchrun and SLURM's scancel deliver), kill -9 during an iteration and during a
save, and two runs on one --save directory. Each interrupted run is resumed and its losses
compared with an uninterrupted run of the same options; no process of the run may outlive it
and no staging directory may survive the next start. Faults inside a run come from
tests/training/instrumented_train.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from griffin_megatron.checkpoint.record import LATEST_FILE

from .harness import (
    TINY,
    environment,
    losses,
    run_train,
    session_processes,
    staging_directories,
    train_command,
)
from .instrumented_train import PAUSE_IN_SAVE, PAUSED_MARKER

pytestmark = pytest.mark.usefixtures("megatron_single_process")

ITERATIONS = 10


def _args(corpus, save, *extra):
    return [*TINY, "--data-path", str(corpus), "--train-iters", str(ITERATIONS),
            "--save", str(save), "--load", str(save), *extra]


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory):
    """Losses of an uninterrupted run with the options every interrupted run uses."""
    root = tmp_path_factory.mktemp("reference")
    done = run_train(_args(tiny_corpus, root / "ckpt"), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return losses(done.stdout)


def _start(command, cwd, env=None):
    """A run in its own session (so that its process group can be signalled, as a terminal or
    SLURM does, and its leftovers found)."""
    return subprocess.Popen(command, cwd=cwd, env=env or environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_until_paused_in_save(process, save, iteration: int) -> str:
    """Wait for the instrumented run (started with PAUSE_IN_SAVE = iteration) to stop inside
    that save; returns the staging directory it is writing."""
    deadline = time.time() + 240
    while not (save / PAUSED_MARKER).exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, f"the save of iteration {iteration} was not reached"
        time.sleep(0.2)
    return (save / PAUSED_MARKER).read_text().strip()


def _read_until(process, prefix: str, output: list) -> None:
    for line in process.stdout:
        output.append(line)
        if line.startswith(prefix):
            return
    raise AssertionError(f"the run ended (rc {process.wait()}) before printing {prefix!r}:\n"
                         + process.stderr.read()[-3000:])


def _assert_no_leftovers(session: int, grace: float = 10.0) -> None:
    deadline = time.time() + grace
    while session_processes(session) and time.time() < deadline:
        time.sleep(0.2)
    left = session_processes(session)
    assert not left, [open(f"/proc/{pid}/cmdline").read().replace("\0", " ") for pid in left]


def _resume_and_compare(corpus, save, cwd, stopped: int, reference: dict, nproc: int = 1,
                        rel: float = 0.0) -> None:
    resumed = run_train(_args(corpus, save), cwd=cwd, nproc=nproc)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at iteration {stopped} ({8 * stopped} samples consumed)" in resumed.stdout
    second = losses(resumed.stdout)
    assert sorted(second) == list(range(stopped + 1, ITERATIONS + 1))
    for i, loss in second.items():
        assert loss == pytest.approx(reference[i], rel=rel, abs=0.0), i
    assert not staging_directories(save)


def _signal_group_and_check(signum, corpus, tmp_path, reference, nproc=1):
    save = tmp_path / "ckpt"
    process = _start(train_command(_args(corpus, save), nproc), tmp_path)
    output = []
    try:
        _read_until(process, "iteration        2/", output)
        os.killpg(process.pid, signum)
        rest, errors = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(output) + rest
    if nproc == 1:
        assert process.returncode == 0, errors[-3000:]
    # (torchrun itself exits non-zero after forwarding a signal, whatever its workers did.)
    assert f"received {signal.Signals(signum).name}" in output, errors[-3000:]
    first = losses(output)
    stopped = max(first)
    assert 2 <= stopped < ITERATIONS
    rel = 0.0 if nproc == 1 else 1e-5
    for i, loss in first.items():
        assert loss == pytest.approx(reference[i], rel=rel, abs=0.0), i
    assert (save / LATEST_FILE).read_text().strip() == str(stopped)
    assert f"saved checkpoint {save / f'iter_{stopped:07d}'}" in output
    assert not staging_directories(save)
    _assert_no_leftovers(process.pid)
    _resume_and_compare(corpus, save, tmp_path, stopped, reference, nproc, rel)


def test_sigterm_to_the_process_group_saves_the_last_iteration(tiny_corpus, tmp_path, reference):
    _signal_group_and_check(signal.SIGTERM, tiny_corpus, tmp_path, reference)


@pytest.mark.slow
def test_sigint_to_the_process_group_saves_the_last_iteration(tiny_corpus, tmp_path, reference):
    _signal_group_and_check(signal.SIGINT, tiny_corpus, tmp_path, reference)


@pytest.mark.slow
def test_sigterm_to_torchrun_tp2_saves_the_last_iteration(tiny_corpus, tmp_path, reference):
    save = tmp_path / "ckpt"
    args = _args(tiny_corpus, save, "--tensor-model-parallel-size", "2")
    process = _start(train_command(args, nproc=2), tmp_path)
    output = []
    try:
        _read_until(process, "iteration        2/", output)
        process.send_signal(signal.SIGTERM)  # torchrun alone; it forwards SIGTERM to its workers
        rest, errors = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(output) + rest
    assert "received SIGTERM" in output, errors[-3000:]
    stopped = max(losses(output))
    assert (save / LATEST_FILE).read_text().strip() == str(stopped)
    assert f"saved checkpoint {save / f'iter_{stopped:07d}'}" in output
    _assert_no_leftovers(process.pid)
    _resume_and_compare(tiny_corpus, save, tmp_path, stopped, reference, nproc=2, rel=1e-5)


@pytest.mark.slow
def test_sigterm_to_the_group_of_a_torchrun_tp2_job(tiny_corpus, tmp_path, reference):
    """What `scancel` does: every process of the job gets SIGTERM at once."""
    _signal_group_and_check(signal.SIGTERM, tiny_corpus, tmp_path, reference, nproc=2)


@pytest.mark.slow
def test_kill_9_mid_iteration_then_resume(tiny_corpus, tmp_path, reference):
    save = tmp_path / "ckpt"
    process = _start(train_command(_args(tiny_corpus, save, "--save-interval", "2")), tmp_path)
    output = []
    try:
        _read_until(process, "iteration        5/", output)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    _assert_no_leftovers(process.pid)
    stopped = int((save / LATEST_FILE).read_text())
    assert stopped in (4, 6)
    _resume_and_compare(tiny_corpus, save, tmp_path, stopped, reference)


def test_kill_9_mid_save_leaves_the_previous_checkpoint(tiny_corpus, tmp_path, reference):
    save = tmp_path / "ckpt"
    command = train_command(_args(tiny_corpus, save, "--save-interval", "3"), instrumented=True)
    process = _start(command, tmp_path, env=environment(**{PAUSE_IN_SAVE: "6"}))
    try:
        staging = _wait_until_paused_in_save(process, save, 6)
        assert os.listdir(staging), "the interrupted save had written its shards"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    (save / PAUSED_MARKER).unlink()
    _assert_no_leftovers(process.pid)
    assert (save / LATEST_FILE).read_text().strip() == "3"
    assert not (save / "iter_0000006").exists()
    assert staging_directories(save), "the killed save left its staging directory"
    _resume_and_compare(tiny_corpus, save, tmp_path, 3, reference)  # which removes it


def test_a_second_run_on_the_same_save_directory_is_refused(tiny_corpus, tmp_path, reference):
    """The first run holds the directory (paused in its first save, so that it is surely alive
    while the second starts); after it is killed, its lock is gone with it and the next run
    starts at once, clearing the staging directory it left."""
    save = tmp_path / "ckpt"
    command = train_command(_args(tiny_corpus, save, "--save-interval", "2"), instrumented=True)
    first = _start(command, tmp_path, env=environment(**{PAUSE_IN_SAVE: "2"}))
    try:
        _wait_until_paused_in_save(first, save, 2)
        second = run_train(_args(tiny_corpus, save), cwd=tmp_path)
        assert first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert second.returncode == 2, second.stderr[-3000:]
    error = second.stderr.strip().splitlines()[-1]
    assert error == (f"griffin-megatron train: error: --save {save} is being written by "
                     f"another run (pid {first.pid} on {os.uname().nodename}); wait for that "
                     "run to end, or pass another --save directory."), error
    assert "Traceback" not in second.stderr
    _assert_no_leftovers(first.pid)
    (save / PAUSED_MARKER).unlink()
    assert staging_directories(save)
    third = run_train(_args(tiny_corpus, save), cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert losses(third.stdout) == reference
    assert not staging_directories(save)
