"""Host side of the fused RG-LRU Triton kernels: launches, autograd, and the public entry.

Layering: kernels (triton_kernels.py) -> `rglru_fwd` / `rglru_bwd` -> `RGLRUTritonFunction`
-> `rglru_triton`. Inputs are validated by `griffin_megatron.ops.rglru.rglru`; this module adds
only the checks specific to the kernels (layout, dtype). Saved for backward: the inputs and one
fp32 state per TILE_T time steps; gates and states inside a tile are recomputed.
"""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
import triton

from . import triton_kernels as kernels
from .launch import Candidate, KernelLauncher, interpreting
from .reference import RGLRU_C
from .schedule import Schedule, choose_schedule
from .triton_kernels import TILE_T

# When set (tests do), every buffer the kernels should fully write starts as NaN, so an element
# a kernel forgets to write shows up in the outputs instead of passing with stale memory.
DEBUG_FILL_NAN = False

# Keys: shapes that stay fixed through a training run (T bucketed to a power of two); the
# launcher adds the device and the inputs' dtype.
_TILE_KEY = ("D", "B", "T_BUCKET")
_fwd_summary = KernelLauncher("fwd_summary", kernels.rglru_fwd_summary_kernel, "fwd", _TILE_KEY)
_fwd = KernelLauncher("fwd", kernels.rglru_fwd_kernel, "fwd", _TILE_KEY + ("SEQUENTIAL",))
_bwd_summary = KernelLauncher("bwd_summary", kernels.rglru_bwd_summary_kernel, "fwd", _TILE_KEY)
_bwd = KernelLauncher("bwd", kernels.rglru_bwd_kernel, "bwd", _TILE_KEY + ("SEQUENTIAL",))
# Small and latency-bound (N / BLOCK_N dependent steps): not worth tuning. BLOCK_N = 8 in the
# interpreter makes short test sequences cross several row blocks.
_carry_scan = KernelLauncher("carry_scan", kernels.carry_scan_kernel, None, (),
                             fixed=Candidate(32, 4))


def _new(shape, dtype, device) -> torch.Tensor:
    if DEBUG_FILL_NAN:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _reset_args(reset: Optional[torch.Tensor]) -> dict:
    """The reset flags as keyword arguments: None when absent (the kernels' HAS_RESET is derived
    from that), else bytes (a view: bool is one byte) with their (time, batch) strides."""
    if reset is None:
        return dict(reset_ptr=None, stride_rt=0, stride_rb=0)
    flags = reset.view(torch.uint8)
    return dict(reset_ptr=flags, stride_rt=flags.stride(0), stride_rb=flags.stride(1))


def _input_args(x, gate_x, gate_a, w, reset: Optional[torch.Tensor]) -> dict:
    """Keyword arguments for the inputs the tile kernels read, with their (time, batch) strides."""
    return dict(
        x_ptr=x, stride_xt=x.stride(0), stride_xb=x.stride(1),
        gx_ptr=gate_x, stride_gxt=gate_x.stride(0), stride_gxb=gate_x.stride(1),
        ga_ptr=gate_a, stride_gat=gate_a.stride(0), stride_gab=gate_a.stride(1),
        w_ptr=w, **_reset_args(reset),
    )


def _sizes(T: int, B: int, D: int) -> dict:
    # T_BUCKET: T rounded up to a power of two, the autotuning key (T itself is not specialised on).
    return dict(T=T, B=B, D=D, T_BUCKET=triton.next_power_of_2(T))


def _tile_maps(num_tiles: int, B: int, D: int, device):
    """Pass 1 output: one affine map (A, B) per tile and column, fp32 [tiles, B, D] each."""
    return tuple(_new((num_tiles, B, D), torch.float32, device) for _ in range(2))


def _grid(D: int, programs_over_time: int, B: int):
    return lambda block_d: (triton.cdiv(D, block_d), programs_over_time, B)


def _chain_maps(map_a, map_b, init, reverse: bool):
    """Pass 2: chain per-tile maps; returns (value entering each tile, value after all tiles)."""
    num_tiles, B, D = map_a.shape
    carries = _new((num_tiles, B, D), torch.float32, map_a.device)
    final = _new((B, D), torch.float32, map_a.device)
    _carry_scan(
        lambda block_d: (triton.cdiv(D, block_d), B),
        map_a_ptr=map_a, map_b_ptr=map_b, init_ptr=init, carries_ptr=carries, final_ptr=final,
        N=num_tiles, B=B, D=D, REVERSE=reverse, BLOCK_N=8 if interpreting() else 64,
    )
    return carries, final


def rglru_fwd(x, gate_x, gate_a, w, reset, initial_state, chunked: bool):
    """Returns y [T, B, D] (x's dtype), final state [B, D] fp32, checkpoints [tiles, B, D] fp32."""
    T, B, D = x.shape
    num_tiles = triton.cdiv(T, TILE_T)
    h0 = None if initial_state is None else initial_state.float().contiguous()
    if T == 0:
        final = h0.clone() if h0 is not None else x.new_zeros((B, D), dtype=torch.float32)
        return torch.empty_like(x), final, x.new_empty((0, B, D), dtype=torch.float32)
    y = _new((T, B, D), x.dtype, x.device)
    inputs = _input_args(x, gate_x, gate_a, w, reset)
    sizes = _sizes(T, B, D)
    if chunked:
        map_a, map_b = _tile_maps(num_tiles, B, D, x.device)
        _fwd_summary(
            _grid(D, num_tiles, B), **inputs, map_a_ptr=map_a, map_b_ptr=map_b, **sizes,
            TILE=TILE_T,
        )
        states, final = _chain_maps(map_a, map_b, h0, reverse=False)
    else:
        states = _new((num_tiles, B, D), torch.float32, x.device)
        final = _new((B, D), torch.float32, x.device)
    _fwd(
        _grid(D, num_tiles if chunked else 1, B), **inputs,
        h0_ptr=h0, y_ptr=y, states_ptr=states, final_ptr=final,
        stride_yt=y.stride(0), stride_yb=y.stride(1), **sizes, NUM_TILES=num_tiles,
        SEQUENTIAL=not chunked, TILE=TILE_T,
    )
    return y, final, states


def rglru_bwd(x, gate_x, gate_a, w, reset, states, grad_y, grad_final, chunked: bool):
    """Returns dx, dgate_x, dgate_a (input dtypes), dw [D] fp32 and dL/dh0 [B, D] fp32.

    grad_y / grad_final may be None (that output did not reach the loss).
    """
    T, B, D = x.shape
    num_tiles = triton.cdiv(T, TILE_T)
    dfinal = None if grad_final is None else grad_final.float().contiguous()
    if T == 0:
        dh0 = dfinal if dfinal is not None else x.new_zeros((B, D), dtype=torch.float32)
        empty = torch.empty_like
        return empty(x), empty(gate_x), empty(gate_a), torch.zeros_like(w), dh0
    if grad_y is None:
        grad_y = torch.zeros_like(x)
    elif grad_y.stride(-1) != 1:
        # Autograd may hand over an expanded gradient (stride 0); the kernels need unit stride.
        grad_y = grad_y.contiguous()
    dx = _new((T, B, D), x.dtype, x.device)
    dgx = _new((T, B, D), gate_x.dtype, x.device)
    dga = _new((T, B, D), gate_a.dtype, x.device)
    inputs = _input_args(x, gate_x, gate_a, w, reset)
    sizes = _sizes(T, B, D)
    dy = dict(dy_ptr=grad_y, stride_dyt=grad_y.stride(0), stride_dyb=grad_y.stride(1))
    if chunked:
        map_a, map_b = _tile_maps(num_tiles, B, D, x.device)
        _bwd_summary(
            _grid(D, num_tiles, B),
            ga_ptr=gate_a, stride_gat=gate_a.stride(0), stride_gab=gate_a.stride(1),
            w_ptr=w, **_reset_args(reset), **dy, map_a_ptr=map_a, map_b_ptr=map_b,
            **sizes, TILE=TILE_T,
        )
        k_in, dh0 = _chain_maps(map_a, map_b, dfinal, reverse=True)
    else:
        k_in = None  # the sequential schedule carries it from tile to tile itself
        dh0 = _new((B, D), torch.float32, x.device)
    programs_over_time = num_tiles if chunked else 1
    dw_partial = _new((programs_over_time, B, D), torch.float32, x.device)
    _bwd(
        _grid(D, programs_over_time, B), **inputs, **dy,
        dfinal_ptr=dfinal, states_ptr=states, k_in_ptr=k_in,
        dx_ptr=dx, dgx_ptr=dgx, dga_ptr=dga, dw_partial_ptr=dw_partial, dh0_ptr=dh0,
        stride_dxt=dx.stride(0), stride_dxb=dx.stride(1),
        stride_dgxt=dgx.stride(0), stride_dgxb=dgx.stride(1),
        stride_dgat=dga.stride(0), stride_dgab=dga.stride(1),
        **sizes, NUM_TILES=num_tiles, SEQUENTIAL=not chunked, TILE=TILE_T,
    )
    return dx, dgx, dga, dw_partial.sum(dim=(0, 1)), dh0


def _on_device(device: torch.device):
    """Launch on the tensors' device, not the current one: a model on cuda:1 needs no set_device
    (Triton launches on torch's current device and stream)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class RGLRUTritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate_x, gate_a, w, reset, initial_state, schedule: Schedule):
        with _on_device(x.device):
            y, final_state, states = rglru_fwd(
                x, gate_x, gate_a, w, reset, initial_state, schedule.forward_chunked)
        ctx.save_for_backward(x, gate_x, gate_a, w, reset, states)
        ctx.schedule = schedule
        ctx.initial_state_dtype = None if initial_state is None else initial_state.dtype
        ctx.set_materialize_grads(False)
        return y, final_state

    @staticmethod
    def backward(ctx, grad_y, grad_final):
        x, gate_x, gate_a, w, reset, states = ctx.saved_tensors
        with _on_device(x.device):
            dx, dgx, dga, dw, dh0 = rglru_bwd(x, gate_x, gate_a, w, reset, states, grad_y,
                                              grad_final, ctx.schedule.backward_chunked)
        dtype = ctx.initial_state_dtype
        return dx, dgx, dga, dw, None, None if dtype is None else dh0.to(dtype), None


def _check_kernel_inputs(x, gate_x, gate_a) -> None:
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(
            "rglru: backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU "
            "correctness runs); use backend='torch' on a CPU."
        )
    for name, t in (("x", x), ("gate_x", gate_x), ("gate_a", gate_a)):
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(
                f"rglru(backend='triton'): {name} is {t.dtype}; the kernels take float32, bfloat16 "
                "or float16. Use backend='torch' or 'reference' for float64."
            )
        if t.stride(-1) != 1 and t.shape[-1] > 1:
            raise ValueError(
                f"rglru(backend='triton'): {name} must have unit stride in its last (channel) "
                f"dimension, got strides {tuple(t.stride())}; pass {name}.contiguous()."
            )


def rglru_triton(
    x: torch.Tensor,
    gate_x: torch.Tensor,
    gate_a: torch.Tensor,
    a_param: torch.Tensor,
    *,
    reset: Optional[torch.Tensor] = None,
    initial_state: Optional[torch.Tensor] = None,
    c: float = RGLRU_C,
    chunked: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fused RG-LRU; same contract as `rglru_torch` (validated by `rglru`).

    Args:
        x, gate_x, gate_a: [T, B, D], unit stride over D, float32 / bfloat16 / float16.
        a_param: [D]; reset: bool [T, B] or None; initial_state: [B, D] or None; c: gate constant.
        chunked: schedule over time (see triton_kernels.py); None chooses forward's and
            backward's by occupancy (`schedule.choose_schedule`), True / False force both
            (tests and benchmarks).

    Returns:
        (y [T, B, D] in x's dtype, final_state [B, D] float32).
    """
    _check_kernel_inputs(x, gate_x, gate_a)
    if chunked is None:
        schedule = choose_schedule(*x.shape, x.element_size(), x.device)
    else:
        schedule = Schedule(forward_chunked=chunked, backward_chunked=chunked)
    # softplus of a [D] parameter: cheap in PyTorch, and autograd carries it back to a_param.
    w = -c * F.softplus(a_param.float())
    return RGLRUTritonFunction.apply(x, gate_x, gate_a, w, reset, initial_state, schedule)
