"""Resuming: 20 iterations straight equal 10 + resume 10 (losses and final weights, fp32).
Interrupted runs (signals, kill -9 during an iteration or a save) are in test_faults.py."""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from .harness import TINY, losses, model_weights, run_train

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


LR_FIELD = re.compile(r"\| lr: (\S+) \|")


def test_raising_train_iters_on_resume_trains_with_the_override(tiny_checkpoint, tiny_corpus,
                                                                tmp_path):
    """The refusal's own advice works: the checkpoint's schedule ended at --train-iters 2 with
    LR 0; resumed with --train-iters 4 and --override-opt-param-scheduler, the schedule spans
    the new length, so the LR is positive again and the weights move."""
    save = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, save)
    args = [*TINY, "--data-path", str(tiny_corpus), "--load", str(save), "--save", str(save),
            "--train-iters", "4", "--min-lr", "0"]
    refused = run_train(args, cwd=tmp_path)
    assert refused.returncode == 2
    assert "pass --override-opt-param-scheduler" in refused.stderr.strip().splitlines()[-1]
    resumed = run_train([*args, "--override-opt-param-scheduler"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(losses(resumed.stdout)) == [3, 4]
    lrs = [float(v) for v in LR_FIELD.findall(resumed.stdout)]
    assert len(lrs) == 2 and lrs[0] > 0
    before = model_weights(tiny_checkpoint / "iter_0000002")
    after = model_weights(save / "iter_0000004")
    assert any(not torch.equal(before[name], after[name]) for name in before)
