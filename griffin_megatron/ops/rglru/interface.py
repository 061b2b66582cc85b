"""The one public RG-LRU op: validates inputs and dispatches to a backend."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch

from .reference import RGLRU_C, rglru_reference
from .torch_scan import rglru_torch

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "triton", "torch", "reference")
_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_logged_choices: set = set()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _validate(x, gate_x, gate_a, a_param, reset, initial_state, backend) -> None:
    _check(backend in BACKENDS, f"rglru: backend={backend!r} is not one of {BACKENDS}.")
    _check(
        x.dim() == 3,
        f"rglru: x must be [T, B, D] (sequence first), got shape {tuple(x.shape)}; "
        "transpose a batch-first tensor with x.transpose(0, 1).",
    )
    for name, t in (("gate_x", gate_x), ("gate_a", gate_a)):
        _check(
            t.shape == x.shape,
            f"rglru: {name} must have x's shape {tuple(x.shape)}, got {tuple(t.shape)}.",
        )
    _check(
        a_param.shape == (x.shape[2],),
        f"rglru: a_param must be [D] = [{x.shape[2]}], got {tuple(a_param.shape)}.",
    )
    for name, t in (("x", x), ("gate_x", gate_x), ("gate_a", gate_a), ("a_param", a_param)):
        _check(
            t.dtype in _SUPPORTED_DTYPES,
            f"rglru: {name} has dtype {t.dtype}; use float32, bfloat16, float16 or float64.",
        )
        _check(
            t.device == x.device,
            f"rglru: {name} is on {t.device} but x is on {x.device}; move all inputs to one device.",
        )
    if reset is not None:
        _check(
            reset.shape == x.shape[:2] and reset.dtype == torch.bool,
            f"rglru: reset must be a bool tensor [T, B] = {list(x.shape[:2])}, "
            f"got {reset.dtype} {tuple(reset.shape)}.",
        )
        _check(reset.device == x.device, "rglru: reset must be on x's device.")
    if initial_state is not None:
        _check(
            initial_state.shape == (x.shape[1], x.shape[2]),
            f"rglru: initial_state must be [B, D] = [{x.shape[1]}, {x.shape[2]}], "
            f"got {tuple(initial_state.shape)}.",
        )
        _check(initial_state.device == x.device, "rglru: initial_state must be on x's device.")


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        backend = "triton" if device.type == "cuda" else "torch"
        key = (backend, device.type)
        if key not in _logged_choices:
            _logged_choices.add(key)
            logger.info("rglru: backend='auto' chose %r for %s tensors", backend, device.type)
    return backend


def rglru(
    x: torch.Tensor,
    gate_x: torch.Tensor,
    gate_a: torch.Tensor,
    a_param: torch.Tensor,
    *,
    reset: Optional[torch.Tensor] = None,
    initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False,
    backend: str = "auto",
    c: float = RGLRU_C,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Real-Gated Linear Recurrent Unit over a sequence, fused gates and scan.

    Args:
        x: [T, B, D] input (bf16, fp16, fp32 or fp64).
        gate_x: [T, B, D] input-gate pre-activation (before the sigmoid).
        gate_a: [T, B, D] recurrence-gate pre-activation (before the sigmoid).
        a_param: [D] decay parameter; a = exp(-c * sigmoid(gate_a) * softplus(a_param)).
        reset: optional bool [T, B], True where a document starts (state cleared, multiplier 1).
        initial_state: optional [B, D] state before t = 0 (any float dtype; used in fp32).
        output_final_state: also return the [B, D] fp32 state after the last step.
        backend: "auto" (Triton on CUDA, PyTorch elsewhere; logged once), "triton", "torch",
            or "reference" (the slow step-by-step oracle).
        c: the gate constant (8 in the paper).

    Returns:
        (y, final_state): y is [T, B, D] in x's dtype; final_state is [B, D] fp32
        (fp64 for fp64 inputs) when output_final_state, else None.
    """
    _validate(x, gate_x, gate_a, a_param, reset, initial_state, backend)
    backend = _resolve_backend(backend, x.device)
    if backend == "triton":
        from .triton_op import rglru_triton  # checks the device and layout the kernels take

        y, final_state = rglru_triton(
            x, gate_x, gate_a, a_param, reset=reset, initial_state=initial_state, c=c
        )
    elif backend == "torch":
        y, final_state = rglru_torch(
            x, gate_x, gate_a, a_param, reset=reset, initial_state=initial_state, c=c
        )
    else:
        y, final_state = rglru_reference(
            x, gate_x, gate_a, a_param, reset=reset, initial_state=initial_state, c=c
        )
    return y, (final_state if output_final_state else None)
