"""Data parallelism: Megatron-Core's DistributedDataParallel, on GPUs and on CPUs alike.

Megatron-Core's DDP keeps gradients in contiguous buffers (`param.main_grad`), reduces them
across the data-parallel group when `finalize_model_grads` runs (or overlapped with the backward
pass on GPUs), and feeds the distributed optimizer, which shards optimizer state over the group.
Its CUDA assumptions (the buffer device, type-name checks in the optimizer, CUDA streams in each
gradient sync from 0.19) are bridged on CPUs inside
`griffin_megatron.compat.cuda_requests_on_cpu()`, entered here around DDP's construction and by
whoever runs the schedules (the training loops, the test workers), so the CPU path is the same
code over gloo; only the options that need CUDA streams (overlapping communication with
compute) are refused there.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.transformer.module import MegatronModule

from .. import compat
from ..config import GriffinConfig

_NEEDS_CUDA_STREAMS = ("overlap_grad_reduce", "overlap_param_gather")


def default_ddp_config(use_distributed_optimizer: bool = False, **overrides) -> DistributedDataParallelConfig:
    """DDP settings for Griffin: fp32 gradient reduction, overlapped with the backward pass on
    GPUs (it needs CUDA streams, so not on CPUs). The distributed optimizer's parameter
    all-gather stays synchronous unless `overlap_param_gather=True` is passed (then weights are
    updated at the next forward pass; save_checkpoint syncs them first)."""
    settings = dict(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=torch.cuda.is_available(),
        use_distributed_optimizer=use_distributed_optimizer,
    )
    settings.update(overrides)
    return DistributedDataParallelConfig(**settings)


def check_ddp_config(ddp_config: DistributedDataParallelConfig) -> None:
    if torch.cuda.is_available():
        return
    for name in _NEEDS_CUDA_STREAMS:
        if getattr(ddp_config, name):
            raise ValueError(
                f"DistributedDataParallelConfig.{name}=True overlaps communication on CUDA "
                "streams, which this machine does not have; set it to False on CPUs."
            )


def wrap_data_parallel(
    chunks: List[MegatronModule],
    config: GriffinConfig,
    ddp_config: Optional[DistributedDataParallelConfig] = None,
) -> List[DistributedDataParallel]:
    """Wrap each model chunk in Megatron-Core DDP, as Megatron-LM's `get_model` does: bucketing
    only for the first chunk (later virtual-pipeline chunks overlap their communication with the
    pipeline anyway), then parameters broadcast from the first data-parallel rank."""
    ddp_config = ddp_config or default_ddp_config()
    check_ddp_config(ddp_config)
    with compat.cuda_requests_on_cpu():  # the buffers are made on torch.cuda.current_device()
        wrapped = [
            DistributedDataParallel(
                config=config, ddp_config=ddp_config, module=chunk, disable_bucketing=index > 0
            )
            for index, chunk in enumerate(chunks)
        ]
        for chunk in wrapped:
            chunk.broadcast_params()
    return wrapped
