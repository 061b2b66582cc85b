"""RMSNorm with RecurrentGemma's (1 + w) gain, computed in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        # One fused op for x * rsqrt(mean(x^2) + eps): the same formula, a third of the
        # per-call overhead, which a one-token generation step pays in every norm.
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return (normed * (1.0 + self.weight.float())).type_as(x)

