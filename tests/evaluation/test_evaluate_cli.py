"""`griffin-megatron evaluate` on raw text and on an indexed dataset: its JSON equals the
bucketed losses computed here from one whole forward of the model per sequence."""

import json
import math

import pytest
import torch

from griffin_megatron.cli.main import main
from griffin_megatron.generation import load_generation_tokenizer as load_tokenizer
from griffin_megatron.interop.hf import from_hf

from tests.fixtures.checkpoints import convert_to_checkpoint, write_hf_dir
from tests.fixtures.word_tokenizers import random_text

RTOL = 1e-5


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf")
    write_hf_dir(directory)
    return directory


@pytest.fixture(scope="module")
def ckpt(hf_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt") / "model"
    convert_to_checkpoint(hf_dir, directory)
    return directory


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("text")
    paths = []
    for i, words in enumerate((700, 90)):
        path = directory / f"doc{i}.txt"
        path.write_text(random_text(words, seed=i))
        paths.append(path)
    return paths


def _whole_forward(model, ids):
    """-log p of ids[1:] from one forward over ids (float64 log-softmax)."""
    ids = torch.as_tensor(ids, dtype=torch.long)[None]
    positions = torch.arange(ids.shape[1])[None]
    return _losses(model, ids, positions)


def _losses(model, ids, positions):
    with torch.no_grad():
        logits = model(ids[:, :-1], positions[:, :-1]).double()
    return -torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)[0]


def _bucket(pairs, edges):
    """Mean loss per [edges[i], edges[i+1]) from (position, loss) pairs, by plain Python."""
    sums, counts = [0.0] * (len(edges) - 1), [0] * (len(edges) - 1)
    for position, loss in pairs:
        i = max(j for j in range(len(edges) - 1) if position >= edges[j])
        sums[i] += loss
        counts[i] += 1
    return sums, counts


def _check(result, pairs, edges):
    sums, counts = _bucket(pairs, edges)
    assert [(b["start"], b["end"]) for b in result["buckets"]] == list(zip(edges[:-1], edges[1:]))
    assert [b["tokens"] for b in result["buckets"]] == counts
    assert all(counts)  # every bucket is exercised
    for bucket, total, count in zip(result["buckets"], sums, counts):
        assert bucket["loss"] == pytest.approx(total / count, rel=RTOL)
    overall = sum(sums) / sum(counts)
    assert result["tokens"] == sum(counts)
    assert result["loss"] == pytest.approx(overall, rel=RTOL)
    assert result["perplexity"] == pytest.approx(math.exp(overall), rel=RTOL)


def test_evaluate_text_files(ckpt, hf_dir, text_files, tmp_path, capsys):
    seq_length = 600  # far past the training length (32) and the window (8)
    out = tmp_path / "out"
    assert main(["evaluate", "--load", str(ckpt), "--text-files", *map(str, text_files),
                 "--seq-length", str(seq_length), "--chunk-tokens", "50",
                 "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    assert (out / "evaluation.png").stat().st_size > 0
    assert "512-600" in printed and "all" in printed

    model, tokenizer = from_hf(hf_dir), load_tokenizer(hf_dir)
    pairs = []
    for path in text_files:
        ids = tokenizer.encode(path.read_text())
        # A file longer than seq_length + 1 tokens is evaluated in fresh pieces of that size.
        for start in range(0, len(ids) - 1, seq_length):
            piece = ids[start:start + seq_length + 1]
            pairs += list(zip(range(1, len(piece)), _whole_forward(model, piece).tolist()))
    _check(result, pairs, [0, 128, 512, 600])
    assert result["settings"]["seq_length"] == seq_length


def test_evaluate_indexed_dataset(ckpt, hf_dir, text_files, tmp_path):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from griffin_megatron.data.megatron_adapter import MegatronTokenizerAdapter
    from griffin_megatron.data.tokenizers import load_tokenizer as load_text_tokenizer

    docs = []
    for i in range(12):
        path = tmp_path / f"d{i}.txt"
        path.write_text(random_text(20 + 20 * i, seed=100 + i))
        docs.append(str(path))
    prefix = tmp_path / "data" / "docs"
    assert main(["preprocess", "--input", *docs, "--output-prefix", str(prefix),
                 "--tokenizer", str(hf_dir / "tokenizer.json"), "--workers", "1"]) == 0
    seq_length, split = 150, "50,50,0"
    out = tmp_path / "out"
    assert main(["evaluate", "--load", str(ckpt), "--data-path", str(prefix), "--split", split,
                 "--seq-length", str(seq_length), "--chunk-tokens", "40", "--no-plot",
                 "--data-cache-path", str(tmp_path / "cache"), "--output-dir", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert not (out / "evaluation.png").exists()

    # The held-out samples, straight from Megatron's GPTDataset with the training conventions.
    tok = load_text_tokenizer(str(hf_dir / "tokenizer.json"))
    config = GPTDatasetConfig(
        random_seed=1234, sequence_length=seq_length, blend=([str(prefix)], None), split=split,
        path_to_cache=str(tmp_path / "cache2"), tokenizer=MegatronTokenizerAdapter(tok),
        reset_position_ids=True, reset_attention_mask=False, eod_mask_loss=False,
        create_attention_mask=False,
    )
    valid = BlendedMegatronDatasetBuilder(GPTDataset, [0, None, 0], lambda: True, config).build()[1]
    assert len(valid) >= 1
    model = from_hf(hf_dir)
    pairs = []
    for index in range(len(valid)):
        sample = valid[index]
        tokens, labels, positions = sample["tokens"], sample["labels"], sample["position_ids"]
        ids = torch.cat([tokens, labels[-1:]])[None]
        full_positions = torch.cat([positions, positions[-1:] + 1])[None]
        full_positions[0, -1] = 0 if tokens[-1] == tok.eod else full_positions[0, -1]
        losses = _losses(model, ids, full_positions).tolist()
        # Target labels[i] has position_ids[i] + 1 tokens of its document before it, unless
        # tokens[i] ends a document (then the target starts a new one and is not counted).
        for i, loss in enumerate(losses):
            if tokens[i] != tok.eod:
                pairs.append((int(positions[i]) + 1, loss))
    assert any(tokens == tok.eod)  # the samples do cross document boundaries
    _check(result, pairs, [0, 128, 150])
