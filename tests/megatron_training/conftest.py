"""A tiny corpus, a starting checkpoint written by `griffin-megatron train`, and our loop's
losses from it: the reference every Megatron-LM pretrain() run here is compared with.

Both loops start from the same weights (`--load START --finetune`): the two loops draw the
initial weights from the same seed but not in the same order (Megatron-LM seeds each pipeline
stage with seed + 100 x stage), so a checkpoint is the one start they share. That also is the
crossing "a griffin-megatron train checkpoint as the --load of the Megatron loop"."""

from __future__ import annotations

import pytest

from tests.fixtures.corpus import documents, write_jsonl
from tests.training.harness import losses, run_train

from .harness import ITERATIONS, shared


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    from griffin_megatron.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("megatron_corpus")
    write_jsonl(root / "docs.jsonl", documents(600))
    return preprocess([str(root / "docs.jsonl")], root / "data" / "corpus", vocab_size=320).prefix


def _our_start_and_reference(preset, corpus, root):
    start = run_train([*shared(preset), "--lr-warmup-iters", "0", "--data-path", str(corpus),
                       "--train-iters", "1", "--save", str(root / "start")], cwd=root)
    assert start.returncode == 0, start.stderr[-3000:]
    ours = run_train([*shared(preset), "--data-path", str(corpus), "--train-iters",
                      str(ITERATIONS), "--load", str(root / "start"), "--finetune", "--no-save"],
                     cwd=root)
    assert ours.returncode == 0, ours.stderr[-3000:]
    return root / "start", losses(ours.stdout + ours.stderr)


@pytest.fixture(scope="session")
def griffin_start(corpus, tmp_path_factory):
    """(checkpoint of `griffin-megatron train`, our loop's losses 1..6 from it) for griffin-tiny."""
    return _our_start_and_reference("griffin-tiny", corpus, tmp_path_factory.mktemp("griffin"))


@pytest.fixture(scope="session")
def hawk_start(corpus, tmp_path_factory):
    return _our_start_and_reference("hawk-tiny", corpus, tmp_path_factory.mktemp("hawk"))
