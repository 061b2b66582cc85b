"""Process-group setup for using the model without a launcher (scripts, notebooks, tests).

Megatron-Core layers read their tensor/pipeline groups from `megatron.core.parallel_state`, so
even a single CPU process needs a (one-rank) process group and initialised model parallelism.
Training also needs Megatron's seeded RNG tracker; building a model whose weights come from
somewhere else (`from_hf`, a checkpoint, the meta device) does not, and leaves it alone.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import random as megatron_random

from . import compat


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def ensure_initialized(
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: int = None,
    seed: Optional[int] = 1234,
    context_parallel_size: int = 1,
) -> None:
    """Initialise torch.distributed (one process when no launcher set it up) and Megatron's
    model-parallel groups, unless already done; idempotent. With a seed, torch's generator and
    Megatron's RNG tracker are seeded when the groups are created here or no tracker has been
    seeded yet; `seed=None` leaves every generator as it is."""
    if not dist.is_initialized():
        if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group(backend=default_backend())
        else:
            dist.init_process_group(
                backend=default_backend(), store=dist.HashStore(), rank=0, world_size=1
            )
    created = not parallel_state.model_parallel_is_initialized()
    if created:
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
            context_parallel_size=context_parallel_size,
        )
    if seed is not None and (created or not rng_tracker_is_seeded()):
        torch.manual_seed(seed)
        compat.model_parallel_manual_seed(seed)


def rng_tracker_is_seeded() -> bool:
    """Whether Megatron's RNG tracker exists and has its named streams (read without creating
    one, which `get_cuda_rng_tracker()` would do)."""
    tracker = megatron_random._CUDA_RNG_STATE_TRACKER
    return tracker is not None and tracker.is_initialized()


def destroy() -> None:
    """Tear down Megatron's groups and the process group (tests and scripts)."""
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
