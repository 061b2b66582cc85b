"""One end-of-document rule: preprocessing and generation pick the same EOS token.

The vocabularies hold several conventional end tokens at once, so a loader that tried the
candidates in a different order (as generation once did) would pick a different one.
"""

import json

import pytest
from transformers import PreTrainedTokenizerFast

from griffin_megatron.data.tokenizers import (
    EOD_CANDIDATES,
    end_of_document_token,
    load_generation_tokenizer,
    load_tokenizer,
)

from tests.fixtures.word_tokenizers import word_level

WORDS = ["<unk>", "<eos>", "</s>", "<|endoftext|>", "the", "cat"]


def _bare():
    """Several conventional end tokens in one vocabulary, all of them special."""
    return word_level(WORDS, specials=[w for w in WORDS if w.startswith("<")])


def test_rule_prefers_the_named_token_then_the_candidate_order():
    vocab = {w: i for i, w in enumerate(WORDS)}
    assert end_of_document_token(vocab.get, "</s>") == vocab["</s>"]
    assert end_of_document_token(vocab.get) == vocab[EOD_CANDIDATES[0]] == vocab["<|endoftext|>"]
    # A named token the vocabulary lacks falls back to the candidates.
    assert end_of_document_token(vocab.get, "<end>") == vocab["<|endoftext|>"]
    assert end_of_document_token({"the": 0}.get) is None


@pytest.mark.parametrize("named", [None, "<eos>", "</s>"], ids=["unnamed", "eos", "s"])
def test_bare_tokenizer_json_gives_one_eos_to_both_loaders(tmp_path, named):
    _bare().save(str(tmp_path / "tokenizer.json"))
    if named is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": named}))
    expected = WORDS.index(named or "<|endoftext|>")
    assert load_tokenizer(tmp_path).eod == expected
    assert load_generation_tokenizer(tmp_path).eos_token_id == expected


def test_transformers_directory_gives_one_eos_to_both_loaders(tmp_path):
    PreTrainedTokenizerFast(tokenizer_object=_bare(), eos_token="</s>", unk_token="<unk>").save_pretrained(tmp_path)
    generation = load_generation_tokenizer(tmp_path)
    assert generation.source.startswith("transformers")
    assert generation.eos_token_id == load_tokenizer(tmp_path).eod == WORDS.index("</s>")
