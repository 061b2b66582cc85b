"""Process-group setup for using the model without a launcher (scripts, notebooks, tests).

Megatron-Core layers read their tensor/pipeline groups from `megatron.core.parallel_state`, so
even a single CPU process needs a (one-rank) process group and initialised model parallelism.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

from . import compat


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def ensure_initialized(
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: int = None,
    seed: int = 1234,
    context_parallel_size: int = 1,
) -> None:
    """Initialise torch.distributed (one process when no launcher set it up) and Megatron's
    model-parallel groups, unless already done. Idempotent."""
    compat.install()
    if not dist.is_initialized():
        if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group(backend=default_backend())
        else:
            dist.init_process_group(
                backend=default_backend(), store=dist.HashStore(), rank=0, world_size=1
            )
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
            context_parallel_size=context_parallel_size,
        )
        torch.manual_seed(seed)
        model_parallel_cuda_manual_seed(seed)


def destroy() -> None:
    """Tear down Megatron's groups and the process group (tests and scripts)."""
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
