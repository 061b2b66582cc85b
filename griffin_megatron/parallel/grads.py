"""Gradient finalisation: Megatron-Core's `finalize_model_grads`, hooked into the schedules.

After the last micro-batch's backward pass, `finalize_model_grads` (called by the schedule
through `config.finalize_model_grads_func`):
- reduces gradients across data-parallel replicas (DDP `finish_grad_sync`; averaged, or summed
  and then divided by the global token count with `calculate_per_token_loss`);
- all-reduces, across the tensor-parallel group, the gradients of parameters that every tensor
  rank holds whole but sees only part of the sequence for: with sequence parallelism the norm
  weights (GriffinRMSNorm marks them `sequence_parallel`);
- all-reduces the tied embedding / output-layer gradient between the first and last pipeline
  stages (Megatron's embedding group).
Recurrent-block parameters need nothing more: their tensor-parallel parts are whole channels
and gate heads, computed locally from gathered full-length inputs.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
from megatron.core.transformer.module import MegatronModule
from torch import Tensor

from ..config import GriffinConfig
from ..checkpoint.full_state import gather_tensor_parallel, named_parameters_by_global_name


def attach_to_schedule(config: GriffinConfig, chunks: List[MegatronModule], optimizer=None) -> None:
    """Set the hooks Megatron-Core's schedules call, as Megatron-LM's training loop does.

    config.finalize_model_grads_func runs `finalize_model_grads` at the end of each
    forward-backward call; with DDP communication overlap, no_sync/grad_sync/param_sync
    functions let the schedule delay and launch the reductions per chunk; with an optimizer,
    its loss scale multiplies the loss before backward.
    """
    config.finalize_model_grads_func = finalize_model_grads
    if optimizer is not None:
        config.grad_scale_func = optimizer.scale_loss
    if not all(isinstance(chunk, DistributedDataParallel) for chunk in chunks):
        return
    ddp_config = chunks[0].ddp_config

    def per_chunk(functions):
        return functions[0] if len(functions) == 1 else functions

    if ddp_config.overlap_grad_reduce:
        config.no_sync_func = per_chunk([chunk.no_sync for chunk in chunks])
        config.grad_sync_func = per_chunk([chunk.start_grad_sync for chunk in chunks])
    if ddp_config.overlap_param_gather and ddp_config.align_param_gather:
        config.param_sync_func = per_chunk([chunk.start_param_sync for chunk in chunks])


def finalize_grads(chunks: List[MegatronModule], num_tokens: Tensor = None) -> None:
    """Finalise gradients outside a schedule (e.g. after a hand-written backward pass)."""
    finalize_model_grads(chunks, num_tokens)


def gradients_are_finite(chunks: List[MegatronModule]) -> bool:
    """Whether every gradient on every rank is finite: one all-reduce over all ranks, so that
    every rank skips (or takes) the optimizer step together.

    Reads each rank's local gradients whole, after finalisation and before the optimizer step.
    With the distributed optimizer a non-finite value that went into another rank's slice of
    the reduce-scatter is still in this rank's own buffer, so it is seen here too."""
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
    found = torch.zeros(1, dtype=torch.float32, device=device)
    for chunk in chunks:
        for param in chunk.parameters():
            grad = parameter_gradient(param)
            if grad is not None:
                found = torch.maximum(found, (~torch.isfinite(grad)).any().float().view(1))
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(found, op=torch.distributed.ReduceOp.MAX)
    return not bool(found.item())


def parameter_gradient(param) -> Tensor:
    """The gradient a parameter holds: DDP's `main_grad` buffer view, else `.grad`."""
    grad = getattr(param, "main_grad", None)
    return grad if grad is not None else param.grad


def full_gradients(chunks: List[MegatronModule]) -> Dict[str, Tensor]:
    """{global parameter name: full gradient} for the parameters of this rank's pipeline stage,
    tensor-parallel shards gathered (every tensor rank calls this). Needs whole gradients on
    every data-parallel rank, so not with the distributed optimizer, whose reduce-scatter leaves
    each rank its own slice."""
    for chunk in chunks:
        ddp_config = getattr(chunk, "ddp_config", None)
        if ddp_config is not None and ddp_config.use_distributed_optimizer:
            raise ValueError(
                "full_gradients needs every data-parallel rank to hold whole gradients; with "
                "the distributed optimizer each rank holds a slice, so read them before the "
                "reduce-scatter or use use_distributed_optimizer=False."
            )
    gradients = {}
    for chunk in chunks:
        for name, param in named_parameters_by_global_name(chunk):
            grad = parameter_gradient(param)
            if grad is None:
                continue
            if name == "output_layer.weight":
                name = "embedding.word_embeddings.weight"  # the tied copy on the last stage
            gradients[name] = gather_tensor_parallel(grad.detach(), param).float().cpu()
    return gradients
