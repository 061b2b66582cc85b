"""`griffin-megatron preprocess`: decode(tokens) == text for every document, EOD after each,
identical output with several workers, and one sentence per bad input."""

from __future__ import annotations

import json

import numpy
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from griffin_megatron.cli.main import main
from griffin_megatron.data.megatron_adapter import MegatronTokenizerAdapter
from griffin_megatron.data.preprocess import preprocess, read_meta
from griffin_megatron.data.tokenizers import load_tokenizer

from tests.fixtures.corpus import documents, write_jsonl

UNICODE_DOCS = ["naïve café — 東京 🙂\n\ttabs  and  double spaces", "x = {'a': [1, 2]}\n"]


def _check_round_trip(prefix, tokenizer_path, docs):
    dataset = IndexedDataset(str(prefix))
    tok = load_tokenizer(tokenizer_path)
    assert len(dataset) == len(docs)
    for i, text in enumerate(docs):
        ids = dataset[i]
        assert ids[-1] == tok.eod, i
        assert tok.eod not in ids[:-1], i
        assert tok.decode(ids[:-1]) == text, i
    # The vocabulary Megatron's tokenizer interface exposes: every id once, string -> id.
    vocab = MegatronTokenizerAdapter(tok).vocab
    assert sorted(vocab.values()) == list(range(tok.vocab_size))


def test_trained_byte_level_bpe_round_trip(tmp_path):
    docs = documents(60) + UNICODE_DOCS
    write_jsonl(tmp_path / "in.jsonl", docs)
    result = preprocess([str(tmp_path / "in.jsonl")], tmp_path / "out" / "corpus", vocab_size=400)
    assert result.tokenizer_path == tmp_path / "out" / "tokenizer.json"
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    _check_round_trip(tmp_path / "out" / "corpus", tmp_path / "out", docs)
    meta = read_meta(tmp_path / "out" / "corpus")
    assert meta["documents"] == len(docs)
    assert meta["tokens"] == int(IndexedDataset(str(tmp_path / "out" / "corpus")).sequence_lengths.sum())


def test_text_files_and_given_tokenizer_with_two_workers_match_one_worker(tmp_path):
    docs = documents(40, seed=1)
    for i, text in enumerate(docs):
        (tmp_path / f"doc{i:03d}.txt").write_text(text)
    write_jsonl(tmp_path / "train.jsonl", docs)
    preprocess([str(tmp_path / "train.jsonl")], tmp_path / "tok" / "base", vocab_size=300)
    pattern = str(tmp_path / "doc*.txt")
    one = preprocess([pattern], tmp_path / "one", tokenizer=tmp_path / "tok" / "tokenizer.json")
    two = preprocess([pattern], tmp_path / "two", tokenizer=tmp_path / "tok", workers=2)
    assert one.documents == two.documents == len(docs)
    assert (tmp_path / "one.bin").read_bytes() == (tmp_path / "two.bin").read_bytes()
    assert (tmp_path / "one.idx").read_bytes() == (tmp_path / "two.idx").read_bytes()
    _check_round_trip(tmp_path / "one", tmp_path / "tok", docs)


def test_sentencepiece_model(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece")
    docs = documents(80, seed=2)
    (tmp_path / "train.txt").write_text("\n".join(docs))
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "sp"), vocab_size=60,
        model_type="bpe", eos_id=2, bos_id=1, unk_id=0, pad_id=-1, character_coverage=1.0,
    )
    write_jsonl(tmp_path / "in.jsonl", docs)
    preprocess([str(tmp_path / "in.jsonl")], tmp_path / "sp_data", tokenizer=tmp_path / "sp.model")
    _check_round_trip(tmp_path / "sp_data", tmp_path / "sp.model", docs)
    assert IndexedDataset(str(tmp_path / "sp_data")).index.dtype == numpy.uint16


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing input", "matches no file"),
        ("existing output", "already exists; choose another --output-prefix"),
        ("bad json", "is not valid JSON"),
        ("missing key", "has no 'text' field"),
        ("missing tokenizer", "does not exist"),
        ("trained tokenizer exists", "pass --tokenizer"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, capsys, case, message):
    good = write_jsonl(tmp_path / "in.jsonl", documents(5))
    out = tmp_path / "out" / "data"
    argv = ["preprocess", "--input", str(good), "--output-prefix", str(out), "--vocab-size", "300",
            "--workers", "1"]
    if case == "missing input":
        argv[2] = str(tmp_path / "nope.jsonl")
    elif case == "existing output":
        out.parent.mkdir()
        out.with_suffix(".bin").write_bytes(b"user data")
    elif case == "bad json":
        good.write_text('{"text": "fine"}\n{not json\n')
    elif case == "missing key":
        good.write_text(json.dumps({"body": "x"}) + "\n")
    elif case == "missing tokenizer":
        argv += ["--tokenizer", str(tmp_path / "no-tokenizer.json")]
    elif case == "trained tokenizer exists":
        out.parent.mkdir()
        (out.parent / "tokenizer.json").write_text("user tokenizer")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert err.count("\n") == 0 and err.endswith(".")
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
