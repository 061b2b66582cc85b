"""Worker: save a training checkpoint at one layout, resume it at others.

At the save layout the model takes one optimizer step (Adam, warm-up schedule, gradient
clipping), is saved with its optimizer and scheduler state, then takes a second step on a batch
whose loss mask is empty: its gradients are exactly zero on every layout, so that update,
lr_2 * m_hat / (sqrt(v_hat) + eps) plus weight decay, depends only on the restored Adam moments,
step count and learning-rate schedule, with no gradient rounding in it. Every load layout
rebuilds the model and optimizer from the checkpoint, must give the logits of the
single-process model holding the saved weights, and must make the same second update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.optimizer import OptimizerConfig
from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

from griffin_megatron.checkpoint.distributed import load_checkpoint, save_checkpoint
from griffin_megatron.checkpoint.model import load_model_checkpoint
from griffin_megatron.parallel import (
    attach_to_schedule,
    average_lm_loss,
    build_model_chunks,
    build_optimizer,
    build_scheduler,
    default_ddp_config,
)
from griffin_megatron.checkpoint.full_state import (
    gather_tensor_parallel,
    load_full_state_dict,
    named_parameters_by_global_name,
)

from tests.parallel.harness import (
    broadcast_from_any,
    data_parallel_share,
    device,
    full_weights,
    make_microbatches,
    reference_loss_and_grads,
    reference_model,
    relative_difference,
    tiny_config,
    use_layout,
)
from tests.parallel.layout_worker import run_schedule

SAVE_LAYOUT = dict(tp=2, pp=2)
LOAD_LAYOUTS = {
    "tp1_pp1": dict(tp=1, pp=1),
    "tp1_pp2": dict(tp=1, pp=2),
    "tp1_pp2_vpp2": dict(tp=1, pp=2, vpp=2),
}


def build_training(arch: str, layout: dict, distributed_optimizer: bool):
    use_layout(layout)
    config = tiny_config(arch, **layout)
    chunks = build_model_chunks(
        config, ddp_config=default_ddp_config(use_distributed_optimizer=distributed_optimizer)
    )
    optimizer = build_optimizer(
        chunks,
        OptimizerConfig(
            optimizer="adam", lr=1e-2, weight_decay=0.01, clip_grad=1.0,
            use_distributed_optimizer=distributed_optimizer,
        ),
    )
    scheduler = build_scheduler(optimizer, max_lr=1e-2, min_lr=1e-3, warmup_steps=3, decay_steps=10)
    attach_to_schedule(config, chunks, optimizer)
    return chunks, optimizer, scheduler


def train_step(chunks, optimizer, scheduler, batches) -> dict:
    for chunk in chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    losses = run_schedule(chunks, data_parallel_share(batches))
    _, grad_norm, _ = optimizer.step()
    scheduler.step(increment=1)
    is_last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    return dict(loss=broadcast_from_any(average_lm_loss(losses) if is_last else None), grad_norm=grad_norm)


def gathered_weights(chunks, shapes: Dict[str, torch.Size]) -> Dict[str, torch.Tensor]:
    """The full weights of the whole model on every rank: tensor shards gathered, pipeline stages
    and data-parallel replicas merged with one all-reduce (each entry averaged over the ranks
    holding it). The last stage's tied output weight stays apart as `output_layer.weight`."""
    names = sorted(shapes)
    offsets, total = {}, 0
    for name in names:
        offsets[name] = total
        total += shapes[name].numel()
    flat = torch.zeros(total + len(names), dtype=torch.float32, device=device())
    for chunk in chunks:
        for name, param in named_parameters_by_global_name(chunk):
            full = gather_tensor_parallel(param.detach(), param).float().reshape(-1)
            flat[offsets[name] : offsets[name] + full.numel()] = full
            flat[total + names.index(name)] = 1.0  # holders of this entry
    dist.all_reduce(flat)
    counts = flat[total:]
    return {
        name: (flat[offsets[name] : offsets[name] + shapes[name].numel()] / counts[i]).reshape(shapes[name]).cpu()
        for i, name in enumerate(names)
        if counts[i] > 0
    }


def _logits_step(data_iterator, model):
    batch = {k: v.to(device()) for k, v in next(data_iterator).items()}
    logits = model(batch["tokens"], batch["position_ids"])

    def keep(output, non_loss_data=False):
        return gather_from_tensor_model_parallel_region(output.detach().contiguous()).cpu()

    return logits, keep


def pipeline_logits(chunks, batches) -> List[torch.Tensor]:
    """Full-vocabulary logits [B, T, V] of each micro-batch through Megatron's forward-only
    schedule, on every rank."""
    outputs = run_schedule(
        chunks, batches, _logits_step, forward_only=True, collect_non_loss_data=True
    )
    is_last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    return broadcast_from_any(list(outputs) if is_last and outputs else None)


def reference_logits(arch: str, weights: dict, batches) -> List[torch.Tensor]:
    use_layout()
    model = reference_model(tiny_config(arch))
    load_full_state_dict(model, {k: v for k, v in weights.items() if k != "output_layer.weight"})
    with torch.no_grad():
        return [
            model(b["tokens"].to(device()), b["position_ids"].to(device())).cpu() for b in batches
        ]


def max_logit_difference(logits, reference) -> float:
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(logits, reference))


def update_difference(after: dict, before: dict, ref_after: dict) -> float:
    """Relative difference between two updates of the same weights: (after - before) against
    (ref_after - before), worst over parameters."""
    return max(
        relative_difference(after[name] - before[name], ref_after[name] - before[name])
        for name in ref_after
        if name != "output_layer.weight"
    )


def tied_weights_equal(weights: dict) -> bool:
    """Whether the last stage's output weight (if any) still equals the first stage's embedding."""
    embedding = weights["embedding.word_embeddings.weight"]
    return bool(torch.equal(embedding, weights.get("output_layer.weight", embedding)))


def checkpoint_reshard(directory: str, arch: str, distributed_optimizer: bool) -> dict:
    step1 = make_microbatches(seed=1)
    step2 = [dict(b, loss_mask=torch.zeros_like(b["loss_mask"])) for b in make_microbatches(seed=2)]
    probe = make_microbatches(count=2, seed=3)

    use_layout()
    initial = full_weights(arch)
    _, step1_grads = reference_loss_and_grads(arch, initial, step1)
    shapes = {name: t.shape for name, t in initial.items()}
    shapes["output_layer.weight"] = initial["embedding.word_embeddings.weight"].shape

    # Save layout: step, save, then the state-only step that resumed runs must repeat.
    chunks, optimizer, scheduler = build_training(arch, SAVE_LAYOUT, distributed_optimizer)
    for chunk in chunks:
        load_full_state_dict(chunk, initial)
    first = train_step(chunks, optimizer, scheduler, step1)
    saved = gathered_weights(chunks, shapes)
    save_logits = pipeline_logits(chunks, probe)
    checkpoint = save_checkpoint(directory, chunks, optimizer, scheduler, iteration=1)
    second = train_step(chunks, optimizer, scheduler, step2)
    reference_after = gathered_weights(chunks, shapes)
    ref_logits = reference_logits(arch, saved, probe)
    results = dict(
        save=dict(
            tied_weights_equal=tied_weights_equal(saved),
            grad_norm=first["grad_norm"],
            reference_grad_norm=torch.sqrt(sum((g.double() ** 2).sum() for g in step1_grads.values())).item(),
            second_grad_norm=second["grad_norm"],
            learning_rate=optimizer.param_groups[0]["lr"],
            update_scale=max((reference_after[k] - saved[k]).abs().max().item() for k in saved),
            logits_diff=max_logit_difference(save_logits, ref_logits),
        )
    )

    for name, layout in LOAD_LAYOUTS.items():
        chunks, optimizer, scheduler = build_training(arch, layout, distributed_optimizer)
        info = load_checkpoint(directory, chunks, optimizer, scheduler)
        loaded = gathered_weights(chunks, shapes)
        logits = pipeline_logits(chunks, probe)
        resumed = train_step(chunks, optimizer, scheduler, step2)
        after = gathered_weights(chunks, shapes)
        results[name] = dict(
            iteration=info["iteration"],
            weights_diff=max((loaded[k] - saved[k]).abs().max().item() for k in loaded),
            logits_diff=max_logit_difference(logits, ref_logits),
            second_grad_norm=resumed["grad_norm"],
            learning_rate=optimizer.param_groups[0]["lr"],
            update_rel=update_difference(after, saved, reference_after),
            tied_weights_equal=tied_weights_equal(after),
        )

    # The model-only reader (HF conversion, evaluation) reads training checkpoints too.
    layout = LOAD_LAYOUTS["tp1_pp2"]
    use_layout(layout)
    bare = build_model_chunks(tiny_config(arch, **layout), wrap_with_ddp=False)
    load_model_checkpoint(bare, checkpoint)
    logits = pipeline_logits(bare, probe)
    results["model_only_tp1_pp2"] = dict(logits_diff=max_logit_difference(logits, ref_logits))
    return results


# (architecture, distributed optimizer): Griffin resumes the ZeRO-1 distributed optimizer
# (its state re-sharded over 4 and 2 data-parallel ranks), Hawk the plain Megatron optimizer.
CHECKPOINT_CASES = (("griffin", True), ("hawk", False))


def four_rank_checks(directory: str) -> dict:
    """Everything that needs four ranks, in one launch: TP=2 x PP=2 gradients, then the
    checkpoint save/resume cases."""
    from tests.parallel.layout_worker import ARCHS, FOUR_RANK_LAYOUTS, compare_layouts

    return dict(
        layouts=compare_layouts(FOUR_RANK_LAYOUTS, ARCHS),
        checkpoints={
            case: checkpoint_reshard(str(Path(directory) / f"{case[0]}-{case[1]}"), *case)
            for case in CHECKPOINT_CASES
        },
    )
