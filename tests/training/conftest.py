"""A tiny preprocessed corpus and a checkpoint trained on it, shared by the training tests
(built once per session)."""

from __future__ import annotations

import pytest

from griffin_megatron.data.preprocess import preprocess

from .corpus import documents, write_jsonl
from .harness import TINY, run_train


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Prefix of a ~60k-token dataset with its trained byte-level BPE (320 tokens) beside it."""
    root = tmp_path_factory.mktemp("corpus")
    write_jsonl(root / "docs.jsonl", documents(600))
    result = preprocess([str(root / "docs.jsonl")], root / "data" / "corpus", vocab_size=320)
    return result.prefix


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus, tmp_path_factory):
    """Save directory of a 2-iteration run of the tests' tiny model (read it, or copy it)."""
    root = tmp_path_factory.mktemp("tiny_checkpoint")
    done = run_train([*TINY, "--data-path", str(tiny_corpus), "--train-iters", "2",
                      "--save", str(root / "ckpt")], cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "ckpt"
