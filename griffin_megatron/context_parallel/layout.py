"""Context-parallel layouts that cannot work, refused at start with one sentence each."""

from __future__ import annotations

from ..errors import ConfigError


def check_context_parallel_layout(config, backend: str = "local", error=ConfigError) -> None:
    """Raise `error` (a ConfigError by default; GriffinConfig passes its own config error) for a
    context-parallel layout this model cannot run."""
    cp = config.context_parallel_size
    if cp == 1:
        return
    tp = config.tensor_model_parallel_size
    if backend != "local":
        raise error(
            f"context_parallel_size={cp} works with the 'local' backend only (the '{backend}' "
            "backend's fused attention and convolution have no Griffin halo exchange); use "
            "--backend local or context_parallel_size=1."
        )
    if config.seq_length % cp:
        raise error(
            f"seq_length={config.seq_length} is not divisible by context_parallel_size={cp}: "
            "every rank holds an equal contiguous shard; pick a multiple of the CP size."
        )
    if config.sequence_parallel and config.seq_length % (cp * tp):
        raise error(
            f"seq_length={config.seq_length} is not divisible by context_parallel_size x "
            f"tensor_model_parallel_size = {cp * tp}: with sequence parallelism each shard is "
            "split again over the tensor-parallel ranks; pick a multiple of their product."
        )
    if getattr(config, "hierarchical_context_parallel_sizes", None):
        raise error(
            "hierarchical_context_parallel_sizes is for Megatron's all-to-all attention; Griffin's "
            "context parallelism uses one flat CP group, so leave it unset."
        )
