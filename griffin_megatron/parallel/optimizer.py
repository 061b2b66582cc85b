"""Megatron-Core's optimizer and learning-rate schedule for Griffin model chunks.

`get_megatron_optimizer` gives the plain (FP32Optimizer / mixed-precision) optimizer, or with
`use_distributed_optimizer` the ZeRO-1 DistributedOptimizer that shards optimizer state across
the data-parallel group. Both run on CPUs too (see griffin_megatron.compat), so a
checkpoint's optimizer state is the same object on every machine.
"""

from __future__ import annotations

from typing import List

from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import get_model_config

from .. import compat


def build_optimizer(chunks: List[MegatronModule], optimizer_config: OptimizerConfig) -> MegatronOptimizer:
    """Megatron-Core optimizer over the (DDP-wrapped) model chunks of this rank."""
    config = get_model_config(chunks[0])
    for name in ("bf16", "fp16"):
        if getattr(optimizer_config, name) != getattr(config, name):
            raise ValueError(
                f"OptimizerConfig.{name}={getattr(optimizer_config, name)} but the model's "
                f"config has {name}={getattr(config, name)}; set both the same."
            )
    ddp_config = getattr(chunks[0], "ddp_config", None)
    if ddp_config is None:
        raise ValueError(
            "the optimizer needs DDP-wrapped model chunks (gradient buffers); build them with "
            "build_model_chunks(..., wrap_with_ddp=True)."
        )
    if ddp_config.use_distributed_optimizer != optimizer_config.use_distributed_optimizer:
        raise ValueError(
            f"OptimizerConfig.use_distributed_optimizer={optimizer_config.use_distributed_optimizer}"
            f" but the DDP wrapper was built with {ddp_config.use_distributed_optimizer}; the "
            "distributed optimizer needs DDP's sharded buffers, so set both the same."
        )
    with compat.cuda_requests_on_cpu():  # Megatron creates its flags with device='cuda'
        return get_megatron_optimizer(optimizer_config, chunks)


def build_scheduler(
    optimizer: MegatronOptimizer,
    *,
    max_lr: float,
    min_lr: float = 0.0,
    warmup_steps: int = 0,
    decay_steps: int,
    decay_style: str = "cosine",
    weight_decay: float = 0.0,
) -> OptimizerParamScheduler:
    """Megatron-Core's learning-rate / weight-decay schedule, stepped once per iteration."""
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0 if warmup_steps else max_lr,
        max_lr=max_lr,
        min_lr=min_lr,
        lr_warmup_steps=warmup_steps,
        lr_decay_steps=decay_steps,
        lr_decay_style=decay_style,
        start_wd=weight_decay,
        end_wd=weight_decay,
        wd_incr_steps=decay_steps,
        wd_incr_style="constant",
    )
