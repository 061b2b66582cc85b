"""RMSNorm with RecurrentGemma's (1 + w) gain, computed in fp32."""

from __future__ import annotations

import torch
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from .channel_parallel import init_device


class GriffinRMSNorm(MegatronModule):
    """x * rsqrt(mean(x^2) + eps) * (1 + w), w initialised to zero; output in x's dtype.

    Megatron's WrappedTorchNorm refuses sequence parallelism, so the local backend uses this one.
    Under sequence parallelism each rank sees a slice of the sequence, so the weight carries
    `sequence_parallel = True`: Megatron then all-reduces its gradient across the TP group.
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **kwargs):
        super().__init__(config=config)
        self.eps = eps
        self.weight = torch.nn.Parameter(
            torch.zeros(hidden_size, dtype=config.params_dtype, device=init_device(config))
        )
        setattr(self.weight, "sequence_parallel", config.sequence_parallel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1.0 + self.weight.float())).type_as(x)

