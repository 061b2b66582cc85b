"""Inputs, a forward+backward driver and the float64 oracle shared by the RG-LRU op tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from griffin_megatron.ops.rglru import rglru_reference

GRAD_NAMES = ("x", "gate_x", "gate_a", "a_param", "initial_state")
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16",
               torch.float64: "fp64"}


@dataclass(frozen=True)
class Case:
    T: int
    B: int
    D: int
    dtype: torch.dtype
    reset: bool
    h0: bool

    @property
    def id(self) -> str:
        parts = [f"T{self.T}", f"B{self.B}", f"D{self.D}", DTYPE_NAMES[self.dtype]]
        parts += ["reset"] * self.reset + ["h0"] * self.h0
        return "-".join(parts)


def make_inputs(case: Case, device, seed: int = 0) -> Dict[str, Optional[torch.Tensor]]:
    """Fresh random inputs in the case's dtype, and gradients for y and the final state.

    a_param spans the regimes: most channels ordinary, every 5th at -20 (a within 1e-8 of 1:
    exercises expm1 and the clipped sqrt gradient), every 7th at +4 (fast decay).
    Resets are random and always include t = 0 of batch row 0.
    """
    g = torch.Generator().manual_seed(seed)
    T, B, D = case.T, case.B, case.D
    # a_param and the state stay float32 under mixed precision; float64 cases are all float64.
    state_dtype = torch.float64 if case.dtype == torch.float64 else torch.float32

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=state_dtype).to(device)

    a_param = randn(D) * 2.0 - 1.0
    a_param[::5] = -20.0
    a_param[3::7] = 4.0
    reset = None
    if case.reset:
        reset = torch.rand(T, B, generator=g) < 0.1
        reset[0, 0] = True
        reset = reset.to(device)
    return {
        "x": randn(T, B, D).to(case.dtype),
        "gate_x": randn(T, B, D).to(case.dtype),
        "gate_a": randn(T, B, D).to(case.dtype),
        "a_param": a_param,
        "reset": reset,
        "initial_state": randn(B, D) if case.h0 else None,
        "dy": randn(T, B, D).to(case.dtype),
        "dfinal": randn(B, D),
    }


def forward_backward(fn: Callable, inputs, *, use_y: bool = True, use_final: bool = True, **kw):
    """Run fn on leaf copies of the inputs; returns y, final_state and the gradients by name.

    The loss is <y, dy> + <final_state, dfinal>, with either term left out on request.
    """
    leaves = {
        name: inputs[name].detach().clone().requires_grad_()
        for name in GRAD_NAMES
        if inputs[name] is not None
    }
    y, final = fn(
        leaves["x"], leaves["gate_x"], leaves["gate_a"], leaves["a_param"],
        reset=inputs["reset"], initial_state=leaves.get("initial_state"), **kw,
    )
    outputs, grad_outputs = [], []
    if use_y:
        outputs.append(y)
        grad_outputs.append(inputs["dy"].to(y.dtype))
    if use_final:
        outputs.append(final)
        grad_outputs.append(inputs["dfinal"].to(final.dtype))
    grads = torch.autograd.grad(outputs, list(leaves.values()), grad_outputs, allow_unused=True)
    return y.detach(), final.detach(), dict(zip(leaves, grads))


def oracle(inputs, **kw):
    """forward_backward of the step-by-step reference in float64 on the same (rounded) inputs."""
    as64 = {k: (v.double() if v is not None and v.is_floating_point() else v)
            for k, v in inputs.items()}
    return forward_backward(rglru_reference, as64, **kw)


def assert_close_to(name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float,
                    atol_scale: float) -> None:
    """Elementwise |actual - expected| <= atol_scale * max|expected| + rtol * |expected|.

    The absolute part is relative to the tensor's largest entry: gradients span orders of
    magnitude across channels (a near 1 versus fast decay) and the small ones only need to be
    right relative to the tensor, not to themselves.
    """
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    expected = expected.double()
    atol = atol_scale * expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol,
                               msg=lambda m: f"{name}: {m}")
