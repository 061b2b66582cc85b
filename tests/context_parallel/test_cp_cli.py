"""`griffin-megatron train --context-parallel-size 2` as users run it (torchrun, gloo): the
printed losses equal the one-process run's, its checkpoint resumes at CP = 1, and a CP = 1
checkpoint resumes at CP = 2, each continuing with the one-process run's losses."""

from __future__ import annotations

import pytest

from tests.training.harness import TINY, losses, run_train

ITERATIONS = 3
CP2 = ["--context-parallel-size", "2"]


def _finetune(corpus, start, iterations):
    return [*TINY, "--data-path", str(corpus), "--train-iters", str(iterations),
            "--load", str(start), "--finetune"]


def _close(got: dict, reference: dict, iterations) -> None:
    assert sorted(got) == list(iterations), got
    for iteration in iterations:
        assert abs(got[iteration] - reference[iteration]) <= 1e-5 * abs(reference[iteration]), (
            iteration, got[iteration], reference[iteration])


@pytest.fixture(scope="module")
def reference(tiny_corpus, tiny_checkpoint, tmp_path_factory):
    """One process, CP = 1: three iterations from the tiny checkpoint."""
    done = run_train(_finetune(tiny_corpus, tiny_checkpoint, ITERATIONS) + ["--no-save"],
                     cwd=tmp_path_factory.mktemp("cp-reference"))
    assert done.returncode == 0, done.stderr[-3000:]
    return losses(done.stdout)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cp2_losses_equal_one_process_and_resume_at_cp1(tiny_corpus, tiny_checkpoint, reference,
                                                        tmp_path):
    save = tmp_path / "cp2"
    done = run_train(_finetune(tiny_corpus, tiny_checkpoint, 2) + CP2 + ["--save", str(save)],
                     cwd=tmp_path, nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CP=2" in done.stdout
    _close(losses(done.stdout), reference, [1, 2])

    resumed = run_train([*TINY, "--data-path", str(tiny_corpus), "--train-iters", str(ITERATIONS),
                         "--load", str(save), "--no-save"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    _close(losses(resumed.stdout), reference, [3])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cp1_checkpoint_resumes_at_cp2(tiny_corpus, tiny_checkpoint, reference, tmp_path):
    save = tmp_path / "cp1"
    done = run_train(_finetune(tiny_corpus, tiny_checkpoint, 2) + ["--save", str(save)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = run_train([*TINY, "--data-path", str(tiny_corpus), "--train-iters", str(ITERATIONS),
                         "--load", str(save), "--no-save"] + CP2, cwd=tmp_path, nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _close(losses(resumed.stdout), reference, [3])
