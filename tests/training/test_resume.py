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


@pytest.mark.parametrize("switch", [["--use-distributed-optimizer"], ["--bf16"]])
def test_resuming_with_another_optimizer_kind_is_refused_by_name(tiny_checkpoint, tiny_corpus,
                                                                 tmp_path, switch):
    """Megatron itself fails with `KeyError: 'optimizer.state.param...'` (distributed) or
    `...fp32_param...` (bf16); the record's optimizer kind turns that into the advice below, and
    the advised --finetune starts a new run from the weights."""
    save = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, save)
    before = sorted(p.name for p in save.iterdir())
    args = [*TINY, "--data-path", str(tiny_corpus), "--train-iters", "2", *switch]
    refused = run_train([*args, "--load", str(save), "--save", str(save)], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert f"checkpoint {save}/iter_0000002 holds the state of the plain optimizer with fp32" in last
    assert "resume without --use-distributed-optimizer and without --bf16" in last
    assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in save.iterdir()) == before
    finetuned = run_train([*args, "--load", str(save), "--finetune", "--save",
                           str(tmp_path / "new")], cwd=tmp_path)
    assert finetuned.returncode == 0, finetuned.stderr[-3000:]
    assert sorted(losses(finetuned.stdout)) == [1, 2]
