"""The same command over two gloo processes (torchrun) gives the single-process losses: tensor
parallel, pipeline parallel, and interleaved (virtual) pipeline stages. All runs start from the
weights of one checkpoint (--finetune), since Megatron seeds each pipeline stage differently."""

from __future__ import annotations

import pytest

from .harness import TINY, losses, run_train

LAYOUTS = {
    "tp2": ["--tensor-model-parallel-size", "2"],
    "pp2": ["--pipeline-model-parallel-size", "2"],
    "pp2-vpp2": ["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1"],
}
ITERATIONS = 3


@pytest.fixture(scope="module")
def start_and_reference(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    start = run_train([*TINY, "--data-path", str(tiny_corpus), "--train-iters", "2",
                       "--save", str(root / "start")], cwd=root)
    assert start.returncode == 0, start.stderr[-3000:]
    reference = run_train(_finetune(tiny_corpus, root), cwd=root)
    assert reference.returncode == 0, reference.stderr[-3000:]
    return root, losses(reference.stdout)


def _finetune(corpus, root):
    return [*TINY, "--data-path", str(corpus), "--train-iters", str(ITERATIONS),
            "--load", str(root / "start"), "--finetune", "--no-save"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_process_layout_matches_one_process(layout, tiny_corpus, start_and_reference):
    root, reference = start_and_reference
    done = run_train(_finetune(tiny_corpus, root) + LAYOUTS[layout], cwd=root, nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    got = losses(done.stdout)
    assert sorted(got) == sorted(reference) == list(range(1, ITERATIONS + 1))
    for iteration, loss in reference.items():
        assert abs(got[iteration] - loss) <= 1e-5 * abs(loss), (iteration, got[iteration], loss)
