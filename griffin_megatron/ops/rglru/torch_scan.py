"""RG-LRU in plain PyTorch without a per-timestep autograd graph (the CPU path).

One `autograd.Function` runs the gate math vectorised over [T, B, D], the recurrence as a loop of
one fused multiply-add per step under no_grad, and a hand-written backward: a reverse scan for the
state gradient followed by vectorised gate gradients. The reference loop builds ~10 autograd nodes
per time step; this builds one node for the whole sequence.

Shapes and math: see reference.py. The same formulas are used by the Triton kernels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .reference import MAX_SQRT_GRADIENT, compute_dtype_for


def _gates(gate_x, gate_a, a_param, keep, c):
    """Vectorised gate math in the compute dtype. keep: [T, B, 1] (0 at document starts) or None."""
    input_gate = torch.sigmoid(gate_x)
    recurrence_gate = torch.sigmoid(gate_a)
    softplus_a = F.softplus(a_param)
    log_a = -c * recurrence_gate * softplus_a
    a = torch.exp(log_a)
    one_minus_a_sq = -torch.expm1(2.0 * log_a)
    multiplier = torch.sqrt(one_minus_a_sq)
    if keep is not None:
        a = a * keep
        multiplier = multiplier * keep + (1.0 - keep)
    return input_gate, recurrence_gate, softplus_a, a, one_minus_a_sq, multiplier


def _forward_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 0..T-1; returns all h: [T, B, D]."""
    states = torch.empty_like(b)
    h = h0
    for t in range(b.shape[0]):
        torch.addcmul(b[t], a[t], h, out=states[t])
        h = states[t]
    return states


def _reverse_scan(a: torch.Tensor, grad_states: torch.Tensor) -> torch.Tensor:
    """g_t = dL/dh_t (total): g_t = grad_states_t + a_{t+1} * g_{t+1}."""
    grads = torch.empty_like(grad_states)
    T = grad_states.shape[0]
    if T == 0:
        return grads
    grads[T - 1] = grad_states[T - 1]
    for t in range(T - 2, -1, -1):
        torch.addcmul(grad_states[t], a[t + 1], grads[t + 1], out=grads[t])
    return grads


def _scan_forward(x, gate_x, gate_a, a_param, reset, initial_state, c):
    """The forward pass in the compute dtype: (states [T, B, D], h0 [B, D])."""
    dtype = compute_dtype_for(x)
    T, B, D = x.shape
    xf, gxf, gaf, apf = (t.to(dtype) for t in (x, gate_x, gate_a, a_param))
    keep = None if reset is None else (~reset).to(dtype).unsqueeze(-1)
    input_gate, _, _, a, _, multiplier = _gates(gxf, gaf, apf, keep, c)
    b = xf * input_gate * multiplier
    h0 = (
        torch.zeros(B, D, dtype=dtype, device=x.device)
        if initial_state is None
        else initial_state.to(dtype)
    )
    return _forward_scan(a, b, h0), h0


def rglru_step(x, gate_x, gate_a, a_param, state, keep=None, c=8.0):
    """One time step, for generation: x, gate_x, gate_a [B, D], a_param [D], state [B, D] in the
    compute dtype, keep [B, 1] (0 where a document starts) or None -> (y in x's dtype, new state).

    The same math as a T = 1 scan without the op's validation and autograd Function: a decode
    step runs this once per recurrent layer per token, where those fixed costs dominated.
    """
    dtype = state.dtype
    input_gate, _, _, a, _, multiplier = _gates(gate_x.to(dtype), gate_a.to(dtype),
                                                a_param.to(dtype), keep, c)
    new_state = torch.addcmul(x.to(dtype) * input_gate * multiplier, a, state)
    return new_state.to(x.dtype), new_state


class RGLRUTorchFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate_x, gate_a, a_param, reset, initial_state, c):
        T = x.shape[0]
        states, h0 = _scan_forward(x, gate_x, gate_a, a_param, reset, initial_state, c)
        final_state = states[-1].clone() if T > 0 else h0.clone()

        ctx.save_for_backward(x, gate_x, gate_a, a_param, reset, h0, states)
        ctx.c = c
        ctx.has_initial_state = initial_state is not None
        ctx.initial_state_dtype = None if initial_state is None else initial_state.dtype
        return states.to(x.dtype), final_state

    @staticmethod
    def backward(ctx, grad_y, grad_final_state):
        x, gate_x, gate_a, a_param, reset, h0, states = ctx.saved_tensors
        c = ctx.c
        dtype = states.dtype
        T = x.shape[0]
        xf, gxf, gaf, apf = (t.to(dtype) for t in (x, gate_x, gate_a, a_param))
        keep = None if reset is None else (~reset).to(dtype).unsqueeze(-1)
        input_gate, recurrence_gate, softplus_a, a, one_minus_a_sq, multiplier = _gates(
            gxf, gaf, apf, keep, c
        )

        grad_states = (
            torch.zeros_like(states) if grad_y is None else grad_y.to(dtype).clone()
        )
        if grad_final_state is not None and T > 0:
            grad_states[-1] += grad_final_state.to(dtype)
        grad_h = _reverse_scan(a, grad_states)  # dL/dh_t, [T, B, D]

        prev_states = torch.cat([h0.unsqueeze(0), states[:-1]], dim=0)
        grad_a = grad_h * prev_states  # zero where keep == 0 is applied below
        grad_b = grad_h
        gated_x = xf * input_gate

        grad_x = grad_b * input_gate * multiplier
        grad_input_gate = grad_b * xf * multiplier
        grad_multiplier = grad_b * gated_x
        # d sqrt(z)/dz, clipped as in the references; z = 1 - a^2, dz/da = -2a.
        sqrt_grad = 1.0 / torch.sqrt(torch.clamp(4.0 * one_minus_a_sq, min=1.0 / MAX_SQRT_GRADIENT**2))
        unmasked_a = torch.exp(-c * recurrence_gate * softplus_a)
        grad_a_total = grad_a + grad_multiplier * sqrt_grad * (-2.0 * unmasked_a)
        if keep is not None:
            grad_a_total = grad_a_total * keep
        grad_log_a = grad_a_total * unmasked_a
        grad_recurrence_gate = grad_log_a * (-c * softplus_a)
        grad_softplus = (grad_log_a * (-c * recurrence_gate)).sum(dim=(0, 1))

        grad_gate_x = grad_input_gate * input_gate * (1.0 - input_gate)
        grad_gate_a = grad_recurrence_gate * recurrence_gate * (1.0 - recurrence_gate)
        grad_a_param = grad_softplus * torch.sigmoid(apf)

        grad_initial_state = None
        if ctx.has_initial_state:
            first_a = a[0] if T > 0 else torch.ones_like(h0)
            first_grad = grad_h[0] if T > 0 else grad_final_state.to(dtype)
            grad_initial_state = (first_a * first_grad).to(ctx.initial_state_dtype)

        return (
            grad_x.to(x.dtype),
            grad_gate_x.to(gate_x.dtype),
            grad_gate_a.to(gate_a.dtype),
            grad_a_param.to(a_param.dtype),
            None,
            grad_initial_state,
            None,
        )


def rglru_torch(
    x: torch.Tensor,
    gate_x: torch.Tensor,
    gate_a: torch.Tensor,
    a_param: torch.Tensor,
    *,
    reset: Optional[torch.Tensor] = None,
    initial_state: Optional[torch.Tensor] = None,
    c: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """See `griffin_megatron.ops.rglru.rglru`; inputs are validated there.

    Without gradients (generation) the autograd Function and its saved tensors are skipped:
    a one-token decode step then costs a handful of elementwise ops.
    """
    inputs = (x, gate_x, gate_a, a_param, initial_state)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return RGLRUTorchFunction.apply(x, gate_x, gate_a, a_param, reset, initial_state, c)
    states, h0 = _scan_forward(x, gate_x, gate_a, a_param, reset, initial_state, c)
    final_state = states[-1].clone() if x.shape[0] > 0 else h0.clone()
    return states.to(x.dtype), final_state
