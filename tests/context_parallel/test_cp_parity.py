"""Context parallelism gives the single-process loss and every gradient (tiny Griffin and Hawk,
fp32, gloo): CP = 2 and 4 (attention window longer than a shard, so the key/value halo comes
from several ranks), documents crossing shard boundaries as position-id restarts and as THD
cu_seqlens, and CP combined with TP + SP, PP, virtual PP and DP with the distributed optimizer."""

from __future__ import annotations

import pytest

from tests.context_parallel.cp_worker import ARCHS, FOUR_RANK_LAYOUTS, TWO_RANK_LAYOUTS

LOSS_TOLERANCE = 1e-6  # relative
GRAD_TOLERANCE = 1e-5  # relative: max |difference| / max |reference|, per tensor


def check(metrics: dict) -> None:
    assert not metrics["missing"], f"parameters nobody holds: {metrics['missing']}"
    assert not metrics["unexpected"], f"parameters the reference lacks: {metrics['unexpected']}"
    assert not metrics["zero_reference_grads"], "a reference gradient is zero; the check is blind there"
    assert metrics["loss_rel"] <= LOSS_TOLERANCE, (metrics["loss"], metrics["ref_loss"])
    assert metrics["grad_rel"] <= GRAD_TOLERANCE, (metrics["worst_param"], metrics["grad_rel"])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", TWO_RANK_LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_cp2_matches_single_process(cp_two_rank_results, arch, layout):
    check(cp_two_rank_results[(arch, layout)])


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("layout", FOUR_RANK_LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_four_ranks_match_single_process(cp_four_rank_results, arch, layout):
    check(cp_four_rank_results[(arch, layout)])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_halo_from_several_ranks(cp_four_rank_results):
    """Shards shorter than the halo: the tokens come from several previous ranks, exactly, and
    their gradients go back to them."""
    for rank, per_case in enumerate(cp_four_rank_results["halo"]):
        for (length, halo), ok in per_case.items():
            assert ok["values"], f"rank {rank}: wrong halo for shard length {length}, halo {halo}"
            assert ok["grads"], f"rank {rank}: wrong halo gradient for shard {length}, halo {halo}"
