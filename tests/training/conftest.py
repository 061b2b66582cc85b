"""A tiny preprocessed corpus shared by the training tests (built once per session)."""

from __future__ import annotations

import pytest

from griffin_megatron.data.preprocess import preprocess

from .corpus import documents, write_jsonl


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Prefix of a ~60k-token dataset with its trained byte-level BPE (320 tokens) beside it."""
    root = tmp_path_factory.mktemp("corpus")
    write_jsonl(root / "docs.jsonl", documents(600))
    result = preprocess([str(root / "docs.jsonl")], root / "data" / "corpus", vocab_size=320)
    return result.prefix
