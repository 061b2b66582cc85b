"""Plain sequential RG-LRU: the oracle every faster implementation is tested against.

Shape legend (Megatron's sequence-first layout):
    T: time steps, B: batch, D: channels (the local RG-LRU width on this tensor-parallel rank)

    x, gate_x, gate_a : [T, B, D]   input and the two gate pre-activations (before the sigmoid)
    a_param           : [D]         softplus(a_param) = -log(a0), the per-channel base decay
    reset             : [T, B] bool True where a document starts: the state is cleared there
    initial_state     : [B, D]      state carried in from before t = 0
    y                 : [T, B, D]   in x's dtype
    final_state       : [B, D]      the state after the last step, float32 (float64 for float64 inputs)

Math (De et al. 2024, eq. 1-4; the released RecurrentGemma code):
    r_t  = sigmoid(gate_a_t)                  recurrence gate
    i_t  = sigmoid(gate_x_t)                  input gate
    log a_t = -c * r_t * softplus(a_param)    c = 8
    a_t  = exp(log a_t),   m_t = sqrt(1 - a_t^2)
    at a document start: a_t = 0, m_t = 1
    h_t  = a_t * h_{t-1} + m_t * (i_t * x_t)

The references clip the gradient of the square root at 1000 (`SqrtBoundDerivative`), which keeps
bfloat16 training finite when a_t is close to 1; every implementation here does the same.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

RGLRU_C = 8.0
MAX_SQRT_GRADIENT = 1000.0


class SqrtBoundDerivative(torch.autograd.Function):
    """sqrt(z) whose gradient 1 / (2 sqrt(z)) is clipped at MAX_SQRT_GRADIENT."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return torch.sqrt(z)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return grad_output / torch.sqrt(torch.clamp(4.0 * z, min=1.0 / MAX_SQRT_GRADIENT**2))


def compute_dtype_for(x: torch.Tensor) -> torch.dtype:
    """Gates, decays and the state are float32, or float64 when the inputs are float64."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def rglru_reference(
    x: torch.Tensor,
    gate_x: torch.Tensor,
    gate_a: torch.Tensor,
    a_param: torch.Tensor,
    *,
    reset: Optional[torch.Tensor] = None,
    initial_state: Optional[torch.Tensor] = None,
    c: float = RGLRU_C,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Step-by-step RG-LRU with autograd through every step. Slow; for tests only.

    Returns (y [T, B, D] in x's dtype, final_state [B, D] in the compute dtype).
    """
    dtype = compute_dtype_for(x)
    T, B, D = x.shape
    xf, gxf, gaf, apf = (t.to(dtype) for t in (x, gate_x, gate_a, a_param))

    log_a = -c * torch.sigmoid(gaf) * torch.nn.functional.softplus(apf)
    a = torch.exp(log_a)
    # -expm1(2 log a) is 1 - a^2 without the cancellation of 1 - exp(2 log a) near a = 1.
    multiplier = SqrtBoundDerivative.apply(-torch.expm1(2.0 * log_a))
    normalized_x = xf * torch.sigmoid(gxf)

    if reset is not None:
        keep = (~reset.bool()).to(dtype).unsqueeze(-1)  # [T, B, 1]
        a = a * keep
        multiplier = multiplier * keep + (1.0 - keep)

    h = (
        torch.zeros(B, D, dtype=dtype, device=x.device)
        if initial_state is None
        else initial_state.to(dtype)
    )
    outputs = []
    for t in range(T):
        h = a[t] * h + multiplier[t] * normalized_x[t]
        outputs.append(h)
    y = torch.stack(outputs, dim=0) if T > 0 else torch.zeros_like(xf)
    return y.to(x.dtype), h
