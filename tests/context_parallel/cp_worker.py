"""Worker: loss and every gradient with context parallelism vs the single-process run.

Each layout runs Megatron-Core's machinery end to end (its CP/DP/TP/PP groups, DDP over the
data-parallel-with-CP group, `get_forward_backward_func`, `finalize_model_grads`); every rank
reads whole micro-batches and keeps its contiguous shard (`context_parallel.shard_batch`). The
reference is one unsplit model with the same weights on the same whole micro-batches.
"""

from __future__ import annotations

from functools import partial
from typing import Dict, List, Sequence

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.packed_seq_params import PackedSeqParams

from griffin_megatron import context_parallel
from griffin_megatron.parallel import (
    attach_to_schedule,
    average_lm_loss,
    build_model_chunks,
    default_ddp_config,
    full_gradients,
    masked_token_loss,
)
from griffin_megatron.checkpoint.full_state import load_full_state_dict
from tests.parallel.harness import (
    SEQ_LENGTH,
    broadcast_from_any,
    data_parallel_share,
    device,
    full_weights,
    make_microbatches,
    reference_model,
    relative_difference,
    tiny_config,
)

ARCHS = ("griffin", "hawk")
# name: parallel sizes and options. "window" > the shard length makes the attention halo come
# from several ranks; "thd" gives documents as cu_seqlens (batch 1) instead of position ids.
LAYOUTS: Dict[str, dict] = {
    "cp2": dict(cp=2),
    "cp2_thd": dict(cp=2, thd=True),
    "cp4_window20": dict(cp=4, window=20),
    "cp4_window20_thd": dict(cp=4, window=20, thd=True),
    "cp2_tp2_sp": dict(cp=2, tp=2, sp=True),
    "cp2_pp2": dict(cp=2, pp=2),
    "cp2_pp2_vpp2": dict(cp=2, pp=2, vpp=2),
    "cp2_dp2_distopt": dict(cp=2, distributed_optimizer=True),
}
TWO_RANK_LAYOUTS = ("cp2", "cp2_thd")
FOUR_RANK_LAYOUTS = ("cp4_window20", "cp4_window20_thd", "cp2_tp2_sp", "cp2_pp2", "cp2_pp2_vpp2",
                     "cp2_dp2_distopt")


def model_options(layout: dict) -> dict:
    return {"attention_window": layout["window"]} if "window" in layout else {}


def microbatches(thd: bool) -> List[dict]:
    """Several documents per row, some crossing shard boundaries; one row has a document
    starting exactly at a CP=2 and a CP=4 boundary (tokens 8, 16 and 24). THD micro-batches hold
    one row and describe the documents by cu_seqlens."""
    batches = make_microbatches()
    boundary = torch.arange(SEQ_LENGTH) % (SEQ_LENGTH // 4)
    batches[0]["position_ids"][1] = boundary
    if not thd:
        return batches
    rows = []
    for batch in batches:
        for row in range(batch["tokens"].shape[0]):
            one = {key: value[row : row + 1] for key, value in batch.items()}
            starts = torch.nonzero(one["position_ids"][0] == 0).flatten()
            one["cu_seqlens"] = torch.cat([starts, torch.tensor([SEQ_LENGTH])]).to(torch.int32)
            rows.append(one)
    return rows


def packed_params(batch: dict):
    if "cu_seqlens" not in batch:
        return None
    cu = batch["cu_seqlens"]
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                           max_seqlen_q=SEQ_LENGTH, max_seqlen_kv=SEQ_LENGTH)


def position_ids_of(batch: dict):
    return None if "cu_seqlens" in batch else batch["position_ids"]


def cp_forward_step(data_iterator, model):
    """parallel.forward_step, with THD micro-batches allowed (cu_seqlens instead of positions)."""
    batch = next(data_iterator)
    shard = context_parallel.current_shard()
    local, seq = context_parallel.shard_batch(
        dict(batch, position_ids=position_ids_of(batch)), shard, packed_params(batch)
    )
    output = model(local["tokens"], local["position_ids"], labels=local["labels"],
                   packed_seq_params=seq)
    return output, partial(masked_token_loss, local["loss_mask"])


def reference_loss_and_grads(arch: str, options: dict, weights: dict, batches: List[dict]):
    """Token-mean loss and every gradient of one unsplit model (CP = TP = PP = 1)."""
    model = reference_model(tiny_config(arch, **options))
    load_full_state_dict(model, weights)
    total, tokens = 0.0, 0.0
    for batch in batches:
        losses = model(batch["tokens"], position_ids_of(batch), labels=batch["labels"],
                       packed_seq_params=packed_params(batch))
        total = total + (losses.float() * batch["loss_mask"]).sum()
        tokens += batch["loss_mask"].sum().item()
    total.backward()
    grads = {name: (p.grad.detach().float() / tokens).cpu() for name, p in model.named_parameters()}
    return total.item() / tokens, grads


def use_layout(layout: dict) -> None:
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    context_parallel.ensure_initialized(layout.get("tp", 1), layout.get("pp", 1), layout.get("vpp"),
                                        context_parallel_size=layout.get("cp", 1))


def check_layout(arch: str, layout: dict, weights, batches, reference) -> dict:
    """One layout (its process groups already initialised) against the reference."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    ref_loss, ref_grads = reference
    config = tiny_config(
        arch, tp=layout.get("tp", 1), pp=layout.get("pp", 1), vpp=layout.get("vpp"),
        sp=layout.get("sp", False), context_parallel_size=layout["cp"], **model_options(layout),
    )
    distributed = layout.get("distributed_optimizer", False)
    chunks = build_model_chunks(config, ddp_config=default_ddp_config(use_distributed_optimizer=distributed))
    for chunk in chunks:
        load_full_state_dict(chunk, weights)
        chunk.zero_grad_buffer()
    attach_to_schedule(config, chunks)
    mine = data_parallel_share(batches)
    iterators = [iter(mine) for _ in chunks]
    losses = get_forward_backward_func()(
        forward_step_func=cp_forward_step,
        data_iterator=iterators if len(chunks) > 1 else iterators[0],
        model=chunks, num_microbatches=len(mine), seq_length=SEQ_LENGTH,
        micro_batch_size=mine[0]["tokens"].shape[0],
    )
    is_last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    loss = broadcast_from_any(average_lm_loss(losses) if is_last else None)
    if distributed:
        grads = _gradients_with_distributed_optimizer(chunks)
    else:
        grads = full_gradients(chunks)
    worst_name, worst = None, 0.0
    for name, grad in grads.items():
        diff = relative_difference(grad, ref_grads[name])
        if diff >= worst:
            worst_name, worst = name, diff
    names: List[set] = [None] * dist.get_world_size()
    dist.all_gather_object(names, set(grads))
    covered = set().union(*names)
    zero = [name for name, g in ref_grads.items() if not g.abs().max() > 0]
    return dict(loss=loss, ref_loss=ref_loss, loss_rel=abs(loss - ref_loss) / abs(ref_loss),
                grad_rel=worst, worst_param=worst_name, params_total=len(ref_grads),
                missing=sorted(set(ref_grads) - covered), unexpected=sorted(covered - set(ref_grads)),
                zero_reference_grads=zero)


def _gradients_with_distributed_optimizer(chunks) -> Dict[str, torch.Tensor]:
    """Whole gradients under the distributed optimizer: each DP x CP rank holds the reduced
    values of its own slice of every bucket; an all-reduce of the slices (zeros elsewhere)
    over the DP x CP group rebuilds the whole reduced buffer on every rank."""
    group = parallel_state.get_data_parallel_group(with_context_parallel=True)
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    for chunk in chunks:
        for buffer in chunk.buffers:
            for bucket in buffer.buckets:
                data = bucket.grad_data
                shard = data.numel() // size
                kept = data[rank * shard : (rank + 1) * shard].clone()
                data.zero_()
                data[rank * shard : (rank + 1) * shard] = kept
                dist.all_reduce(data, group=group)
        chunk.ddp_config.use_distributed_optimizer = False  # full_gradients' guard: now whole
    return full_gradients(chunks)


def check_halo_shapes() -> dict:
    """previous_tokens on shards shorter than the halo (2 tokens, halo 3 and 5): values and
    gradients against slicing one whole tensor."""
    from griffin_megatron.context_parallel.halo import previous_tokens

    shard = context_parallel.current_shard()
    results = {}
    for length, halo in ((2, 3), (2, 5), (3, 1)):
        torch.manual_seed(0)
        whole = torch.randn(length * shard.size, 2, 3, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(halo, 2, 3, dtype=torch.float64)
        start = shard.rank * length
        local = whole[start : start + length].detach().clone().requires_grad_(True)
        got = previous_tokens(local, halo, shard)
        expected = whole[max(0, start - halo) : start]
        (got * weight[halo - got.shape[0]:]).sum().backward()
        # Reference gradient of the same objective summed over every rank's halo.
        total = sum(
            (whole[max(0, r * length - halo) : r * length] * weight[halo - min(halo, r * length):]).sum()
            for r in range(shard.size)
        )
        total.backward()
        results[(length, halo)] = dict(
            values=(got.shape == expected.shape) and torch.equal(got, expected.detach()),
            grads=torch.allclose(local.grad, whole.grad[start : start + length]),
        )
    return results


def process_groups(layout: dict) -> tuple:
    return layout.get("tp", 1), layout.get("pp", 1), layout.get("vpp"), layout.get("cp", 1)


def compare_layouts(layout_names: Sequence[str], archs: Sequence[str] = ARCHS, halo_check=False) -> dict:
    """{(arch, layout): metrics} on this rank. Process groups are built once per distinct set of
    parallel sizes (gloo groups are never freed, and each holds threads)."""
    use_layout({})
    weights = {arch: full_weights(arch) for arch in archs}
    references = {}
    for arch in archs:
        for name in layout_names:
            layout = LAYOUTS[name]
            key = (arch, layout.get("window"), layout.get("thd", False))
            if key not in references:
                references[key] = reference_loss_and_grads(
                    arch, model_options(layout), weights[arch], microbatches(key[2]))
    results, current = {}, process_groups({})
    for name in sorted(layout_names, key=lambda n: repr(process_groups(LAYOUTS[n]))):
        layout = LAYOUTS[name]
        if process_groups(layout) != current:
            use_layout(layout)
            current = process_groups(layout)
        for arch in archs:
            key = (arch, layout.get("window"), layout.get("thd", False))
            results[(arch, name)] = check_layout(arch, layout, weights[arch], microbatches(key[2]),
                                                 references[key])
    if halo_check:
        if current != (1, 1, None, dist.get_world_size()):
            use_layout(dict(cp=dist.get_world_size()))
        results["halo"] = check_halo_shapes()
    return results
