"""RG-LRU: the gated linear recurrence of Hawk and Griffin.

- `rglru`: the public op (validation, backend choice).
- `rglru_reference`: the step-by-step oracle, same signature minus the op-only flags.
- `rglru_torch`: the PyTorch path without a per-step autograd graph (CPU default).
- `triton_op.rglru_triton`: the fused Triton kernels (CUDA default).
"""

from .interface import BACKENDS, rglru
from .reference import RGLRU_C, rglru_reference
from .torch_scan import rglru_torch

__all__ = ["BACKENDS", "RGLRU_C", "rglru", "rglru_reference", "rglru_torch"]
