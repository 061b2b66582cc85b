"""Resuming: 20 iterations straight equal 10 + resume 10 (losses and final weights, fp32); a
kill in the middle of a save leaves the previous checkpoint as the one --load finds; SIGTERM
saves and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch

from griffin_megatron.checkpointing import LATEST_FILE
from griffin_megatron.training.checkpoint import PAUSE_IN_SAVE_ENV, PAUSED_MARKER

from .harness import TINY, environment, losses, model_weights, run_train, train_command

pytestmark = pytest.mark.usefixtures("megatron_single_process")


def test_resume_equals_an_uninterrupted_run(tiny_corpus, tmp_path):
    common = [*TINY, "--data-path", str(tiny_corpus), "--train-iters", "20"]
    straight = run_train([*common, "--save", str(tmp_path / "a"), "--save-interval", "10"],
                         cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    resumed = run_train([*common, "--load", str(tmp_path / "a" / "iter_0000010"),
                         "--save", str(tmp_path / "b")], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "at iteration 10 (80 samples consumed)" in resumed.stdout

    first, second = losses(straight.stdout), losses(resumed.stdout)
    assert sorted(second) == list(range(11, 21))
    assert {i: first[i] for i in second} == second
    a = model_weights(tmp_path / "a" / "iter_0000020")
    b = model_weights(tmp_path / "b" / "iter_0000020")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _wait_for(path, process, timeout=240):
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended (rc {process.returncode}) before {path} appeared:\n"
                                 + process.stderr.read()[-3000:])
        if time.time() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.2)


def test_kill_during_save_leaves_the_previous_checkpoint(tiny_corpus, tmp_path):
    save = tmp_path / "ckpt"
    base = [*TINY, "--data-path", str(tiny_corpus), "--save", str(save)]
    args = [*base, "--train-iters", "6", "--save-interval", "3"]
    process = subprocess.Popen(
        train_command(args), cwd=tmp_path, env=environment(**{PAUSE_IN_SAVE_ENV: "6"}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _wait_for(save / PAUSED_MARKER, process)
        staging = (save / PAUSED_MARKER).read_text().strip()
        assert os.listdir(staging), "the interrupted save had written its shards"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert (save / LATEST_FILE).read_text().strip() == "3"
    assert not (save / "iter_0000006").exists()

    resumed = run_train([*base, "--train-iters", "4", "--load", str(save)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at iteration 3 (24 samples consumed)" in resumed.stdout
    assert sorted(losses(resumed.stdout)) == [4]
    assert (save / LATEST_FILE).read_text().strip() == "4"


def test_sigterm_saves_and_exits_cleanly(tiny_corpus, tmp_path):
    save = tmp_path / "ckpt"
    base = [*TINY, "--data-path", str(tiny_corpus), "--save", str(save)]
    args = [*base, "--train-iters", "500"]
    process = subprocess.Popen(train_command(args), cwd=tmp_path, env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if line.startswith("iteration        3/"):
                process.send_signal(signal.SIGTERM)
                break
        rest, errors = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(output) + rest
    assert process.returncode == 0, errors[-3000:]
    assert "received SIGTERM" in output
    stopped = max(losses(output))
    assert 3 <= stopped < 500
    assert (save / LATEST_FILE).read_text().strip() == str(stopped)
    assert f"--load {save} --save {save}" in output

    resumed = run_train([*base, "--train-iters", str(stopped + 1), "--load", str(save)],
                        cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(losses(resumed.stdout)) == [stopped + 1]
