"""Moving full (unsharded) state dicts in and out of a tensor/pipeline-parallel GriffinModel.

Each parameter's Megatron attributes say how it is split: `partition_dim` and `partition_stride`
(stride 2 for the fused [x; y] and [gate; up] projections, whose halves are split separately).
Pipeline stages hold global layers [offset, offset + n) under local indices 0..n-1.
"""

from __future__ import annotations

import re
from typing import Dict

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.utils import unwrap_model
from torch import Tensor

from ..errors import CheckpointError, ConfigError
from ..layer_specs import FUSED_NORM_CHECKPOINT_KEYS

def _leave_as_allocated(tensor: Tensor) -> Tensor:
    return tensor


# Config fields for a model whose weights come from a checkpoint: Megatron still runs its
# initialisation path, which is what marks each weight's tensor-parallel split (partition_dim,
# stride) for load_full_state_dict, gradient-norm reduction and gathering, but draws nothing.
WEIGHTS_FROM_CHECKPOINT = dict(
    perform_initialization=True,
    init_method=_leave_as_allocated,
    output_layer_init_method=_leave_as_allocated,
)

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.*)$")


def local_parameter_name(name: str) -> str:
    """The local backend's name of a parameter: the te backend's fused norm weights
    (`...linear_qkv.layer_norm_weight`) become `...input_layernorm.weight` and so on."""
    for fused, local in FUSED_NORM_CHECKPOINT_KEYS.items():
        marker = f".{fused}"
        if marker in name:
            head, _, tail = name.partition(marker)
            return f"{head}.{local}{tail}"
    return name


def _tp():
    if not parallel_state.model_parallel_is_initialized():
        return 0, 1, None
    return (
        parallel_state.get_tensor_model_parallel_rank(),
        parallel_state.get_tensor_model_parallel_world_size(),
        parallel_state.get_tensor_model_parallel_group(),
    )


def _split(full: Tensor, param: Tensor, rank: int, size: int) -> Tensor:
    if size == 1 or not getattr(param, "tensor_model_parallel", False):
        return full
    dim = param.partition_dim
    stride = getattr(param, "partition_stride", 1)
    pieces = full.chunk(size * stride, dim=dim)
    return torch.cat(pieces[rank::size], dim=dim)


def _layer_offset(model) -> int:
    return model.decoder.layers[0].layer_number - 1 if len(model.decoder.layers) else 0


def _global_name(name: str, offset: int) -> str:
    match = _LAYER.match(name)
    if match is None:
        return name
    return f"decoder.layers.{int(match.group(1)) + offset}.{match.group(2)}"


def named_parameters_by_global_name(model):
    """(name, parameter) of one model chunk (wrappers such as DDP removed), named as in a
    single-stage model: layers carry their global index, whatever pipeline stage holds them."""
    model = unwrap_model(model)
    offset = _layer_offset(model)
    for name, param in model.named_parameters():
        yield _global_name(local_parameter_name(name), offset), param


def load_full_state_dict(model, full_state: Dict[str, Tensor]) -> None:
    """Copy a full TP=1 / PP=1 state dict into this rank's shard of `model` (one model chunk,
    possibly wrapped in DDP / Float16Module; call it once per virtual-pipeline chunk)."""
    rank, size, _ = _tp()
    tied = unwrap_model(model).share_embeddings_and_output_weights
    missing = []
    with torch.no_grad():
        for key, param in named_parameters_by_global_name(model):
            if key == "output_layer.weight" and tied:
                key = "embedding.word_embeddings.weight"  # tied output layer on the last stage
            if key not in full_state:
                missing.append(key)
                continue
            shard = _split(full_state[key], param, rank, size)
            if shard.shape != param.shape:
                raise CheckpointError(
                    f"{key}: checkpoint tensor {tuple(full_state[key].shape)} does not fit "
                    f"parameter {tuple(param.shape)} at tensor-parallel size {size}; the "
                    "checkpoint was made for another architecture."
                )
            param.copy_(shard.to(param.dtype))
    if missing:
        raise CheckpointError(
            f"the checkpoint lacks {len(missing)} of the model's tensors (first: {missing[0]}); "
            "it was made for another architecture."
        )


def gather_tensor_parallel(shard: Tensor, param: Tensor) -> Tensor:
    """The full tensor of a tensor-parallel parameter (or of a tensor shaped like its shard,
    e.g. its gradient); every rank of the tensor-parallel group calls this."""
    _, size, group = _tp()
    return _gather(shard, param, size, group)


def _gather(shard: Tensor, param: Tensor, size: int, group) -> Tensor:
    if size == 1 or not getattr(param, "tensor_model_parallel", False):
        return shard
    dim = param.partition_dim
    stride = getattr(param, "partition_stride", 1)
    parts = [torch.empty_like(shard) for _ in range(size)]
    dist.all_gather(parts, shard.contiguous(), group=group)
    if stride == 1:
        return torch.cat(parts, dim=dim)
    per_rank = [p.chunk(stride, dim=dim) for p in parts]
    return torch.cat([per_rank[r][s] for s in range(stride) for r in range(size)], dim=dim)


def gather_full_state_dict(model) -> Dict[str, Tensor]:
    """The full TP=1 state dict of a pipeline-parallel size 1 model (every TP rank calls this),
    under the local backend's names whichever backend the model was built with."""
    if parallel_state.model_parallel_is_initialized():
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            raise ConfigError(
                "gathering a full state dict needs pipeline-parallel size 1; save a distributed "
                "checkpoint and convert it with `griffin-megatron convert mcore-to-hf` instead."
            )
    _, size, group = _tp()
    tied = unwrap_model(model).share_embeddings_and_output_weights
    full = {}
    for name, param in unwrap_model(model).named_parameters():
        if name == "output_layer.weight" and tied:
            continue  # the embedding's
        full[local_parameter_name(name)] = _gather(param.detach(), param, size, group).cpu()
    return full
