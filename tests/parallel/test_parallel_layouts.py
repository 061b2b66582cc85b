"""Every parallel layout gives the single-process loss and gradients (tiny Griffin and Hawk, fp32).

Each layout runs Megatron-Core's own machinery end to end -- DDP-wrapped model chunks,
`get_forward_backward_func` schedules (no pipelining, 1F1B, interleaved), `finalize_model_grads`
-- on micro-batches holding several documents per row (position ids restarting at 0) and a loss
mask with holes. Every parameter's gradient, tensor shards gathered and named by global layer,
is compared with the gradient of one unsplit model holding the same weights, computed in the
same workers (see layout_worker.py).
"""

from __future__ import annotations

import pytest

from tests.parallel.layout_worker import ARCHS, FOUR_RANK_LAYOUTS, TWO_RANK_LAYOUTS

TOLERANCE = 1e-5  # relative: max |difference| / max |reference|, per tensor


def check_layout(metrics: dict) -> None:
    assert not metrics["missing"], f"parameters nobody holds: {metrics['missing']}"
    assert not metrics["unexpected"], f"parameters the reference lacks: {metrics['unexpected']}"
    assert not metrics["zero_reference_grads"], "a reference gradient is zero; the check is blind there"
    assert metrics["loss_rel"] <= TOLERANCE, (metrics["loss"], metrics["ref_loss"])
    assert metrics["grad_rel"] <= TOLERANCE, (metrics["worst_param"], metrics["grad_rel"])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", TWO_RANK_LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_two_ranks_match_single_process(two_rank_results, arch, layout):
    check_layout(two_rank_results[(arch, layout)])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", FOUR_RANK_LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_four_ranks_match_single_process(four_rank_results, arch, layout):
    check_layout(four_rank_results["layouts"][(arch, layout)])


@pytest.mark.cuda
@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", TWO_RANK_LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_two_gpus_match_single_process(cuda_two_rank_results, arch, layout):
    check_layout(cuda_two_rank_results[(arch, layout)])


@pytest.mark.cuda
@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", FOUR_RANK_LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_four_gpus_match_single_process(cuda_four_rank_results, arch, layout):
    check_layout(cuda_four_rank_results["layouts"][(arch, layout)])
