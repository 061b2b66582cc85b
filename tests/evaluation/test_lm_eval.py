"""lm-evaluation-harness, offline: our model type `griffin-megatron` on a checkpoint scores the
local tasks in tests/data/lm_eval_tasks (multiple choice, rolling perplexity, generate_until)
as lm-eval's own `hf` model does on the HF export of the same weights.

Per request, not only per task: every log-likelihood within 1e-4 and every generation equal.
"""

import os
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from tests.fixtures.checkpoints import convert_to_checkpoint, write_hf_dir  # noqa: E402

TASKS_DIR = Path(__file__).parent.parent / "data" / "lm_eval_tasks"
TASKS = ["griffin_tiny_choice", "griffin_tiny_rolling", "griffin_tiny_generate"]
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A checkpoint and its HF export (griffin_megatron.to_hf) with the tokenizer beside it."""
    from griffin_megatron import to_hf
    from griffin_megatron.loading import load_model

    root = tmp_path_factory.mktemp("lm_eval")
    write_hf_dir(root / "source")
    convert_to_checkpoint(root / "source", root / "ckpt")
    to_hf(load_model(str(root / "ckpt"), None), root / "export", tokenizer_dir=root / "ckpt")
    return root / "ckpt", root / "export"


def _evaluate(model, model_args, task_manager):
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    return lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=TASKS, log_samples=True,
        task_manager=task_manager, bootstrap_iters=0,
    )


def _responses(results, task):
    return [sample["resps"] for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


@pytest.fixture(scope="module")
def both(models):
    import griffin_megatron.evaluation.lm_eval_model  # noqa: F401  registers griffin-megatron

    from lm_eval.tasks import TaskManager

    ckpt, export = models
    tasks = TaskManager(include_path=str(TASKS_DIR))  # indexing lm-eval's tasks takes a while: once
    ours = _evaluate("griffin-megatron", {"load": str(ckpt), "batch_size": 3, "chunk_tokens": 5}, tasks)
    # batch_size 1: HF RecurrentGemma's recurrence does not mask left padding.
    theirs = _evaluate("hf", {"pretrained": str(export), "batch_size": 1, "max_length": 4096,
                              "device": "cpu", "dtype": "float32"}, tasks)
    return ours, theirs


def test_multiple_choice_loglikelihoods_equal_hf(both):
    ours, theirs = (_responses(r, "griffin_tiny_choice") for r in both)
    assert len(ours) == len(theirs) == 4
    for our_doc, their_doc in zip(ours, theirs):
        for (our_ll, our_greedy), (their_ll, their_greedy) in zip(
                [r[0] for r in our_doc], [r[0] for r in their_doc]):
            assert our_ll == pytest.approx(their_ll, abs=TOLERANCE)
            assert our_greedy == their_greedy
    for metric in ("acc,none", "acc_norm,none"):
        assert both[0]["results"]["griffin_tiny_choice"][metric] == \
            both[1]["results"]["griffin_tiny_choice"][metric]


def test_rolling_loglikelihoods_equal_hf(both):
    ours, theirs = (_responses(r, "griffin_tiny_rolling") for r in both)
    assert len(ours) == len(theirs) == 3
    for our_doc, their_doc in zip(ours, theirs):
        assert our_doc[0][0] == pytest.approx(their_doc[0][0], abs=TOLERANCE)
    for metric in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none"):
        assert both[0]["results"]["griffin_tiny_rolling"][metric] == pytest.approx(
            both[1]["results"]["griffin_tiny_rolling"][metric], rel=TOLERANCE)


def test_generations_equal_hf(both):
    ours, theirs = (_responses(r, "griffin_tiny_generate") for r in both)
    assert len(ours) == 4
    assert any(doc[0][0] for doc in ours)  # something was generated
    assert ours == theirs
