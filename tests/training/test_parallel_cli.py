"""The same command over two gloo processes (torchrun) gives the single-process losses: tensor
parallel, pipeline parallel, interleaved (virtual) pipeline stages, and data parallel with the
distributed optimizer. All runs start from the
weights of one checkpoint (--finetune), since Megatron seeds each pipeline stage differently."""

from __future__ import annotations

import pytest

from .harness import TINY, losses, run_train

LAYOUTS = {
    "tp2": ["--tensor-model-parallel-size", "2"],
    "pp2": ["--pipeline-model-parallel-size", "2"],
    "pp2-vpp2": ["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1"],
    "pp2-uneven": ["--pipeline-model-parallel-size", "2", "--decoder-first-pipeline-num-layers", "1"],
    "dp2-distributed-optimizer": ["--use-distributed-optimizer"],
}
ITERATIONS = 3


def _finetune(corpus, start):
    return [*TINY, "--data-path", str(corpus), "--train-iters", str(ITERATIONS),
            "--load", str(start), "--finetune", "--no-save"]


@pytest.fixture(scope="module")
def reference_losses(tiny_corpus, tiny_checkpoint, tmp_path_factory):
    done = run_train(_finetune(tiny_corpus, tiny_checkpoint),
                     cwd=tmp_path_factory.mktemp("reference"))
    assert done.returncode == 0, done.stderr[-3000:]
    return losses(done.stdout)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_process_layout_matches_one_process(layout, tiny_corpus, tiny_checkpoint,
                                                reference_losses, tmp_path):
    reference = reference_losses
    done = run_train(_finetune(tiny_corpus, tiny_checkpoint) + LAYOUTS[layout], cwd=tmp_path,
                     nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    got = losses(done.stdout)
    assert sorted(got) == sorted(reference) == list(range(1, ITERATIONS + 1))
    for iteration, loss in reference.items():
        assert abs(got[iteration] - loss) <= 1e-5 * abs(loss), (iteration, got[iteration], loss)
