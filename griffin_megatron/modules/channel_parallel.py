"""Tensor-parallel parameters split by channel that do not belong to a Megatron linear layer.

The Conv1D and RG-LRU parameters are per channel (or per gate block), so each rank holds a slice
along axis 0. With CPU initialisation every rank draws the full tensor from the same seeded
generator and keeps its slice, exactly like Megatron's `_initialize_affine_weight_cpu`: a model
built at TP=2 then holds the same numbers as one built at TP=1.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from megatron.core import parallel_state
from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.utils import (
    ensure_metadata_has_dp_cp_group,
    make_sharded_tensors_for_checkpoint,
)


def init_device(config: TransformerConfig):
    """Where parameters are allocated, following Megatron's linears: with CPU initialisation
    the default device (the CPU, or "meta" inside `with torch.device("meta")`, which is how
    parameter counts are taken without memory), else the current GPU."""
    if config.init_model_with_meta_device:
        return torch.device("meta")
    if config.use_cpu_initialization or not torch.cuda.is_available():
        return None
    return torch.device("cuda", torch.cuda.current_device())


def tp_rank_and_size() -> tuple:
    if not parallel_state.model_parallel_is_initialized():
        return 0, 1
    return (
        parallel_state.get_tensor_model_parallel_rank(),
        parallel_state.get_tensor_model_parallel_world_size(),
    )


def partitioned_parameter(
    config: TransformerConfig,
    full_shape: Sequence[int],
    init_fn: Callable[[torch.Tensor], None],
    dtype: torch.dtype = None,
) -> torch.nn.Parameter:
    """A parameter split along axis 0 across the tensor-parallel group, initialised by init_fn."""
    rank, size = tp_rank_and_size()
    full_shape = tuple(full_shape)
    local_shape = (full_shape[0] // size,) + full_shape[1:]
    dtype = dtype or config.params_dtype
    param = torch.nn.Parameter(torch.empty(local_shape, dtype=dtype, device=init_device(config)))
    set_tensor_model_parallel_attributes(param, is_parallel=True, dim=0, stride=1)
    device = param.device
    if config.perform_initialization and device.type != "meta":
        with torch.no_grad():
            if device.type == "cpu":
                full = torch.empty(full_shape, dtype=torch.float32)
                init_fn(full)
                param.copy_(full.chunk(size, dim=0)[rank])
            else:
                local = torch.empty(local_shape, dtype=torch.float32, device=device)
                with get_cuda_rng_tracker().fork():
                    init_fn(local)
                param.copy_(local)
    return param


def channel_sharded_state_dict(module, prefix: str, sharded_offsets=(), metadata=None) -> dict:
    """Distributed-checkpoint entries for a module whose own parameters are all split on axis 0.

    Declaring the axis lets a checkpoint saved at one tensor-parallel size load at another.
    """
    state = {}
    module._save_to_state_dict(state, "", keep_vars=True)
    metadata = ensure_metadata_has_dp_cp_group(metadata)
    return make_sharded_tensors_for_checkpoint(
        state,
        prefix,
        {name: 0 for name in state},
        sharded_offsets,
        tp_group=parallel_state.get_tensor_model_parallel_group(),
        dp_cp_group=metadata["dp_cp_group"],
    )
