"""RG-LRU: the gated linear recurrence of Hawk and Griffin.

- `rglru`: the public op (validation, backend choice).
- `rglru_reference`: the step-by-step oracle, same signature minus the op-only flags.
- `rglru_torch`: the PyTorch path without a per-step autograd graph (CPU default).
- `triton_op.rglru_triton`: the fused Triton kernels (CUDA default); `launch.py` launches them
  (candidates, no timing inside a step), `schedule.py` picks sequential or chunked.
- `warm_up`: compiles and tunes the kernels for given shapes before the first step.
"""

from .interface import BACKENDS, rglru
from .reference import RGLRU_C, rglru_reference
from .torch_scan import rglru_torch
from .warm_up import warm_up

__all__ = ["BACKENDS", "RGLRU_C", "rglru", "rglru_reference", "rglru_torch", "warm_up"]
