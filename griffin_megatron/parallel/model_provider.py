"""Model chunks for this rank, built the way Megatron-LM's `get_model` builds them.

With virtual (interleaved) pipeline parallelism a rank holds several model chunks, one per
virtual stage; each is a GriffinModel whose layers are chosen by global layer number
(`get_griffin_block_spec`). The chunks are then moved to the GPU, wrapped in `Float16Module` for
bf16/fp16, and in Megatron-Core's DistributedDataParallel (see data_parallel.py).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.transformer.module import Float16Module, MegatronModule

from ..config import GriffinConfig
from ..model import GriffinModel
from .data_parallel import wrap_data_parallel


def virtual_stages(config: GriffinConfig) -> List[Optional[int]]:
    """The virtual pipeline stages this rank builds: [0, .., vpp-1], or [None] without VPP."""
    vpp = config.virtual_pipeline_model_parallel_size
    if parallel_state.get_pipeline_model_parallel_world_size() > 1 and vpp is not None:
        return list(range(vpp))
    return [None]


def build_griffin_chunk(
    config: GriffinConfig, backend: str = "local", vp_stage: Optional[int] = None
) -> GriffinModel:
    """The GriffinModel of one (virtual) pipeline stage of this rank."""
    return GriffinModel(
        config,
        backend=backend,
        pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
        post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
        vp_stage=vp_stage,
    )


def build_model_chunks(
    config: GriffinConfig,
    backend: str = "local",
    *,
    wrap_with_ddp: bool = True,
    ddp_config: Optional[DistributedDataParallelConfig] = None,
) -> List[MegatronModule]:
    """This rank's model chunks, ready for Megatron-Core's schedules and optimizer.

    Call after `runtime.ensure_initialized(...)` with the same parallel sizes as `config`.

    Args:
        config: the model's GriffinConfig (its parallel sizes must match Megatron's state).
        backend: "local" or "te" layer implementations.
        wrap_with_ddp: wrap each chunk in Megatron-Core DistributedDataParallel (training);
            False gives bare models (evaluation, conversion).
        ddp_config: DDP settings; default `default_ddp_config()`.

    Returns:
        One chunk per virtual pipeline stage (a list of one without virtual pipelining).
    """
    check_parallel_state_matches(config)
    chunks = [build_griffin_chunk(config, backend, vp_stage) for vp_stage in virtual_stages(config)]
    for chunk in chunks:
        for param in chunk.parameters():
            # Parameters that no Megatron layer marked are replicated across tensor ranks.
            tensor_parallel.set_defaults_if_not_set_tensor_model_parallel_attributes(param)
    if torch.cuda.is_available() and not config.init_model_with_meta_device:
        for chunk in chunks:
            chunk.cuda(torch.cuda.current_device())
    if config.fp16 or config.bf16:
        chunks = [Float16Module(config, chunk) for chunk in chunks]
    if wrap_with_ddp:
        chunks = wrap_data_parallel(chunks, config, ddp_config)
    return chunks


def check_parallel_state_matches(config: GriffinConfig) -> None:
    """Fail with one sentence when the config's parallel sizes differ from Megatron's state."""
    actual = {
        "tensor_model_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_model_parallel_size": parallel_state.get_pipeline_model_parallel_world_size(),
        "virtual_pipeline_model_parallel_size": (
            parallel_state.get_virtual_pipeline_model_parallel_world_size()
        ),
    }
    if actual["pipeline_model_parallel_size"] == 1:
        del actual["virtual_pipeline_model_parallel_size"]  # meaningless without pipelining
    for name, value in actual.items():
        wanted = getattr(config, name)
        if wanted != value:
            raise ValueError(
                f"config.{name}={wanted} but Megatron's parallel state was initialised with "
                f"{value}; pass the same sizes to runtime.ensure_initialized and GriffinConfig."
            )
