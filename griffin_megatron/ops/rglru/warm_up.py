"""Compile and tune the RG-LRU Triton kernels once, before the first step.

A training or generation step never times kernels (launch.py): a shape nobody warmed up runs
the first candidate. `warm_up` runs one forward and backward per shape with tuning allowed, so
every kernel of both passes is compiled and, where several candidates are eligible, timed once
and the fastest remembered for that shape's key. Call it before the first step and before any
CUDA-graph capture; during capture it refuses. On a CPU it returns at once (the PyTorch scan
runs there, nothing to compile).
"""

from __future__ import annotations

from typing import Iterable, Tuple

import torch

from .launch import interpreting, refuse_during_capture, tuning


def warm_up(shapes: Iterable[Tuple[int, int, int]], dtype: torch.dtype, device,
            backward: bool = True) -> None:
    """Compile and tune the kernels for each (T, B, D) the model will call them with.

    Args:
        shapes: (sequence length, micro-batch, channels) per distinct call, as the op sees it
            (channels per tensor-parallel rank, sequence per context-parallel rank).
        dtype: the inputs' dtype (bfloat16 under --bf16).
        device: the CUDA device the model runs on; a CPU device returns at once.
        backward: also the backward kernels (training); generation needs the forward only.
    """
    device = torch.device(device)
    if device.type != "cuda" or interpreting():
        return
    from .triton_op import rglru_triton  # imports Triton: only where kernels are compiled

    refuse_during_capture()
    generator = torch.Generator(device=device).manual_seed(0)
    with tuning(), torch.cuda.device(device), torch.set_grad_enabled(backward):
        for T, B, D in shapes:
            x, gate_x, gate_a = (
                torch.randn(T, B, D, generator=generator, device=device, dtype=dtype)
                .requires_grad_() for _ in range(3))
            a_param = torch.randn(D, generator=generator, device=device).requires_grad_()
            # Packed documents: training launches carry reset flags (HAS_RESET) too.
            reset = torch.zeros(T, B, dtype=torch.bool, device=device)
            reset[0] = True
            y, _ = rglru_triton(x, gate_x, gate_a, a_param, reset=reset)
            if backward:
                torch.autograd.grad(y, (x, gate_x, gate_a, a_param), torch.randn_like(y))
        torch.cuda.synchronize(device)
