"""Megatron-Core's process groups with a context-parallel dimension.

`runtime.ensure_initialized(context_parallel_size=...)` builds them in one
`initialize_model_parallel` call, so Megatron's own CP group, its data-parallel-with-CP group
(DDP's gradient reduction, the distributed optimizer's sharding, loss averaging) and its rank
order are used. Groups are built once: gloo groups are never freed and each holds threads.
"""

from __future__ import annotations

from megatron.core import parallel_state

from .. import runtime


def ensure_initialized(tensor_model_parallel_size: int = 1, pipeline_model_parallel_size: int = 1,
                       virtual_pipeline_model_parallel_size: int = None,
                       context_parallel_size: int = 1, seed: int = 1234) -> None:
    """runtime.ensure_initialized with Megatron's context-parallel groups; groups that already
    exist with another CP size (built for another layout) are replaced."""
    if (parallel_state.model_parallel_is_initialized()
            and parallel_state.get_context_parallel_world_size() != context_parallel_size):
        parallel_state.destroy_model_parallel()
    runtime.ensure_initialized(tensor_model_parallel_size, pipeline_model_parallel_size,
                               virtual_pipeline_model_parallel_size, seed=seed,
                               context_parallel_size=context_parallel_size)
