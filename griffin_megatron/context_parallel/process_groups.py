"""Megatron-Core's process groups with a context-parallel dimension.

`runtime.ensure_initialized` builds the groups without one; with CP > 1 this rebuilds them with
`initialize_model_parallel(context_parallel_size=...)`, so Megatron's own CP group, its
data-parallel-with-CP group (DDP's gradient reduction, the distributed optimizer's sharding,
loss averaging) and its rank order are used.
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state
from .. import compat, runtime


def ensure_initialized(tensor_model_parallel_size: int = 1, pipeline_model_parallel_size: int = 1,
                       virtual_pipeline_model_parallel_size: int = None,
                       context_parallel_size: int = 1, seed: int = 1234) -> None:
    """runtime.ensure_initialized, with Megatron's context-parallel groups when CP > 1."""
    runtime.ensure_initialized(tensor_model_parallel_size, pipeline_model_parallel_size,
                               virtual_pipeline_model_parallel_size, seed=seed)
    if parallel_state.get_context_parallel_world_size() == context_parallel_size:
        return
    parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tensor_model_parallel_size,
        pipeline_model_parallel_size=pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
        context_parallel_size=context_parallel_size,
    )
    torch.manual_seed(seed)
    compat.model_parallel_manual_seed(seed)
