"""Worker: loss and every gradient at a parallel layout vs the single-process reference."""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from griffin_megatron.parallel import (
    attach_to_schedule,
    average_lm_loss,
    build_model_chunks,
    forward_step,
    full_gradients,
)
from griffin_megatron.checkpoint.full_state import load_full_state_dict

from tests.parallel.harness import (
    MICRO_BATCH,
    SEQ_LENGTH,
    broadcast_from_any,
    data_parallel_share,
    full_weights,
    make_microbatches,
    reference_loss_and_grads,
    relative_difference,
    tiny_config,
    use_layout,
)

ARCHS = ("griffin", "hawk")
# name: parallel sizes (and options) of each checked layout
LAYOUTS: Dict[str, dict] = {
    "tp2": dict(tp=2),
    "tp2_sp": dict(tp=2, sp=True),
    "pp2": dict(pp=2),
    "pp2_uneven": dict(pp=2, uneven=True),
    "pp2_vpp2": dict(pp=2, vpp=2),
    "dp2": dict(),
    "tp2_pp2": dict(tp=2, pp=2),
}
TWO_RANK_LAYOUTS = ("tp2", "tp2_sp", "pp2", "pp2_uneven", "pp2_vpp2", "dp2")
FOUR_RANK_LAYOUTS = ("tp2_pp2",)


def run_schedule(chunks, batches: List[dict], forward_step_func=forward_step, **options):
    """Megatron's schedule over this rank's micro-batches (one iterator per model chunk)."""
    iterators = [iter(batches) for _ in chunks]
    return get_forward_backward_func()(
        forward_step_func=forward_step_func,
        data_iterator=iterators if len(chunks) > 1 else iterators[0],
        model=chunks,
        num_microbatches=len(batches),
        seq_length=SEQ_LENGTH,
        micro_batch_size=MICRO_BATCH,
        **options,
    )


def check_layout(arch: str, layout: dict, weights, batches, ref_loss, ref_grads) -> dict:
    use_layout(layout)
    config = tiny_config(arch, **layout)
    chunks = build_model_chunks(config)
    for chunk in chunks:
        load_full_state_dict(chunk, weights)
        chunk.zero_grad_buffer()
    attach_to_schedule(config, chunks)

    losses = run_schedule(chunks, data_parallel_share(batches))
    is_last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    loss = broadcast_from_any(average_lm_loss(losses) if is_last else None)

    grads = full_gradients(chunks)
    worst_name, worst = None, 0.0
    for name, grad in grads.items():
        diff = relative_difference(grad, ref_grads[name])
        if diff >= worst:
            worst_name, worst = name, diff
    names: List[set] = [None] * dist.get_world_size()
    dist.all_gather_object(names, set(grads))
    covered = set().union(*names)
    return dict(
        loss=loss,
        ref_loss=ref_loss,
        loss_rel=abs(loss - ref_loss) / abs(ref_loss),
        grad_rel=worst,
        worst_param=worst_name,
        params_checked=len(grads),
        params_total=len(ref_grads),
        missing=sorted(set(ref_grads) - covered),
        unexpected=sorted(covered - set(ref_grads)),
    )


def compare_layouts(layout_names: Sequence[str], archs: Sequence[str]) -> dict:
    """{(arch, layout): metrics} on this rank."""
    batches = make_microbatches()
    results = {}
    for arch in archs:
        use_layout()
        weights = full_weights(arch)
        ref_loss, ref_grads = reference_loss_and_grads(arch, weights, batches)
        zero = [name for name, g in ref_grads.items() if not g.abs().max() > 0]
        for name in layout_names:
            metrics = check_layout(arch, LAYOUTS[name], weights, batches, ref_loss, ref_grads)
            metrics["zero_reference_grads"] = zero
            results[(arch, name)] = metrics
    return results
