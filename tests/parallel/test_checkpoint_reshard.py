"""Training checkpoints saved at TP=2 x PP=2 resume at TP=1 x PP=1, TP=1 x PP=2 and
TP=1 x PP=2 x VPP=2 (4 ranks, so data parallelism 4, 2 and 2).

Griffin resumes Megatron's distributed optimizer (its state re-sharded over the new data-parallel
group), Hawk the plain Megatron optimizer; see checkpoint_worker.py for the procedure. After
loading, the weights are the saved ones, the logits are those of one unsplit model holding them,
and the next optimizer update -- made from zero gradients, so it depends only on the restored
Adam moments, step and learning-rate schedule -- equals the uninterrupted run's.
"""

from __future__ import annotations

import json

import pytest

from tests.parallel.checkpoint_worker import CHECKPOINT_CASES, LOAD_LAYOUTS

TOLERANCE = 1e-5


def check_save(save: dict) -> None:
    assert save["tied_weights_equal"], "embedding and tied output layer drifted apart"
    assert abs(save["grad_norm"] - save["reference_grad_norm"]) <= TOLERANCE * save["reference_grad_norm"]
    assert save["logits_diff"] <= TOLERANCE * 30.0  # logits are soft-capped at 30
    assert save["second_grad_norm"] == 0.0  # the state-only step really had no gradient
    assert save["update_scale"] > 0.0  # ... and still moved the weights (Adam moments, decay)


def check_resume(resumed: dict, save: dict) -> None:
    assert resumed["iteration"] == 1
    assert resumed["weights_diff"] == 0.0
    assert resumed["logits_diff"] <= TOLERANCE * 30.0
    assert resumed["learning_rate"] == save["learning_rate"]
    assert resumed["update_rel"] <= 1e-6
    assert resumed["tied_weights_equal"]


def _cases():
    return [pytest.param(case, id=f"{case[0]}-{'distributed' if case[1] else 'plain'}-optimizer") for case in CHECKPOINT_CASES]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", _cases())
def test_save_layout(four_rank_results, case):
    check_save(four_rank_results["checkpoints"][case]["save"])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", list(LOAD_LAYOUTS))
@pytest.mark.parametrize("case", _cases())
def test_resume_at_other_layout(four_rank_results, case, layout):
    results = four_rank_results["checkpoints"][case]
    check_resume(results[layout], results["save"])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", _cases())
def test_model_only_reader_reads_training_checkpoint(four_rank_results, case):
    assert four_rank_results["checkpoints"][case]["model_only_tp1_pp2"]["logits_diff"] <= TOLERANCE * 30.0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", _cases())
def test_megatron_lm_directory_layout(four_rank_results, case):
    save_dir = four_rank_results["directory"] / f"{case[0]}-{case[1]}"
    assert (save_dir / "latest_checkpointed_iteration.txt").read_text().strip() == "1"
    record = json.loads((save_dir / "iter_0000001" / "griffin_model.json").read_text())
    assert record["iteration"] == 1 and record["has_optimizer"] and record["has_scheduler"]
    assert not [p for p in save_dir.iterdir() if p.name.startswith(".")], "staging left behind"


@pytest.mark.cuda
@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", _cases())
def test_cuda_save_and_resume(cuda_four_rank_results, case):
    results = cuda_four_rank_results["checkpoints"][case]
    check_save(results["save"])
    for layout in LOAD_LAYOUTS:
        check_resume(results[layout], results["save"])
