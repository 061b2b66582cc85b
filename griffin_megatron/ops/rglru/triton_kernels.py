"""Triton kernels of the fused RG-LRU (forward and backward); host code is in triton_op.py.

Layout: x, gate_x, gate_a, y and their gradients are [T, B, D] with a unit channel stride; time
and batch strides are arguments, so views of a fused projection need no copy. Every program owns
one batch row `b` and BLOCK_D channels, and walks time in tiles of TILE_T rows: a whole tile is
loaded at once (memory-level parallelism), the gates are computed on it, and the recurrence runs
as `tl.associative_scan` over the tile's rows with the state carried in from the previous tile.
Optional tensors (resets, initial state, dL/d final state) are passed as None when absent, and
`triton.heuristics` turns that into the HAS_* flags that compile their code out.

One state per tile start ("checkpoint", fp32 [num_tiles, B, D]) is all the forward keeps for
the backward besides its inputs: the backward recomputes a tile's gates and states from its
checkpoint. Two schedules, chosen by the host:

- sequential (`SEQUENTIAL=True`): one program per (channel block, b) walks all tiles; used when
  B * D alone fills the GPU. Inputs are read once.
- chunked (`SEQUENTIAL=False`): one program per (channel block, tile, b). A summary kernel
  composes each tile's steps into one affine map (h -> A h + B), `carry_scan_kernel` chains the
  maps over tiles to get every checkpoint, then the tile kernel runs from its checkpoint. This
  multiplies the parallelism by T / TILE_T for small micro-batches, at the price of reading the
  inputs twice.

The backward mirrors it in reverse time with dL/dh flowing backwards; see `rglru_bwd_kernel`.
Math (see reference.py): r = sigmoid(gate_a), i = sigmoid(gate_x), log_a = r * w with
w = -c * softplus(a_param) computed by the host, a = exp(log_a), m = sqrt(1 - a^2), a = 0 and
m = 1 at a reset, h_t = a_t h_{t-1} + m_t i_t x_t. All in fp32.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Rows per tile, and so the spacing of the checkpoints the backward restarts from. Host and
# kernels share it: the checkpoint buffer's shape depends on it, so it is not autotuned.
TILE_T = 64

# d sqrt(z)/dz = 1 / sqrt(4z) is clipped at 1000 as in the references: 1 / sqrt(max(4z, 1e-6)).
# Compiled kernels may read a global only when it is a tl.constexpr (the interpreter reads any).
MIN_4Z = tl.constexpr(1e-6)

def _given(arg_name: str):
    """A `triton.heuristics` rule: the flag is set when the launch passes a tensor, not None."""
    return lambda args: args[arg_name] is not None


# Optional inputs are passed as None when absent; these flags compile them out.
_HAS_RESET = {"HAS_RESET": _given("reset_ptr")}

# Sizes that change between calls are not specialised on (== 1, divisible by 16): one compiled
# kernel serves every sequence length and micro-batch.
_SIZES = ["T", "B", "T_BUCKET"]


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    """Compose h -> a1 h + b1 (earlier) with h -> a2 h + b2 (later)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _grad_combine(f1, p1, q1, f2, p2, q2):
    """Compose two spans of the reverse recurrence g_t = dy_t + a_{t+1} g_{t+1}.

    A span [i, j] is (f, p, q) with g_i = p * k + q, where k = a_{j+1} g_{j+1} enters from the
    right and f = a_i (what the span passes on leftwards is f * g_i). Used with reverse=True, so
    (f1, p1, q1) is the later span and (f2, p2, q2) the earlier one. Padding rows past T are the
    left identity (1, 1, 0) of this order.
    """
    m = p2 * f1
    return f2, m * p1, q2 + m * q1


@triton.jit
def _expm1(x):
    # tl has no expm1. Taylor series to x^8 below |x| = 0.5 (truncation < 2e-8 relative), where
    # exp(x) - 1 would cancel; exp(x) - 1 above, where the result is at least 0.39 in size.
    series = x * (1.0 + x / 2 * (1.0 + x / 3 * (1.0 + x / 4 * (1.0 + x / 5 * (
        1.0 + x / 6 * (1.0 + x / 7 * (1.0 + x / 8)))))))
    return tl.where(tl.abs(x) < 0.5, series, tl.exp(x) - 1.0)


@triton.jit
def _gates(gx, ga, w, keep, valid):
    """Gate math on a [TILE_T, BLOCK_D] fp32 tile.

    keep: [TILE_T, 1] False at a reset; valid: [TILE_T, 1] False on rows past T.
    Returns i, r, the unmasked a and 1 - a^2, and the recurrence's a (0 at a reset, 1 on padding
    rows so they act as the identity) and m (1 at a reset).
    """
    i = tl.sigmoid(gx)
    r = tl.sigmoid(ga)
    log_a = r * w[None, :]
    a_unmasked = tl.exp(log_a)
    one_minus_a_sq = -_expm1(2.0 * log_a)
    a = tl.where(valid, tl.where(keep, a_unmasked, 0.0), 1.0)
    m = tl.where(keep, tl.sqrt(one_minus_a_sq), 1.0)
    return i, r, a_unmasked, one_minus_a_sq, a, m


@triton.jit
def _tile_rows(tile, T, HAS_RESET: tl.constexpr, reset_ptr, stride_rt, offs_rb, TILE: tl.constexpr):
    """Time indices of a tile, [TILE, 1] masks for valid rows and for rows without a reset."""
    t = tile * TILE + tl.arange(0, TILE)
    valid = t < T
    if HAS_RESET:
        flags = tl.load(reset_ptr + t.to(tl.int64) * stride_rt + offs_rb, mask=valid, other=0)
        keep = flags == 0
    else:
        keep = t >= 0  # no resets: every row keeps its state
    return t, valid[:, None], keep[:, None]


@triton.jit
def _load_tile(ptr, t, offs_b, offs_d, stride_t, mask):
    offsets = t[:, None].to(tl.int64) * stride_t + offs_b + offs_d[None, :]
    return tl.load(ptr + offsets, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store_tile(ptr, value, t, offs_b, offs_d, stride_t, mask):
    offsets = t[:, None].to(tl.int64) * stride_t + offs_b + offs_d[None, :]
    tl.store(ptr + offsets, value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _channels(pid_d, D, w_ptr, BLOCK_D: tl.constexpr):
    """This program's channel offsets, their mask, and w for them."""
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    return offs_d, mask_d, tl.load(w_ptr + offs_d, mask=mask_d, other=0.0)


@triton.jit
def _tile_inputs(
    x_ptr, gx_ptr, ga_ptr, reset_ptr, w, tile, b64, offs_d, mask_d, T,
    stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab, stride_rt, stride_rb,
    HAS_RESET: tl.constexpr, TILE: tl.constexpr,
):
    """Load one tile of x and the gate pre-activations and run the gate math (`_gates`).

    Returns t, the [TILE, BLOCK_D] load/store mask, `live` (valid rows without a reset), x and
    the outputs of `_gates`.
    """
    t, valid, keep = _tile_rows(tile, T, HAS_RESET, reset_ptr, stride_rt, b64 * stride_rb, TILE)
    mask = valid & mask_d[None, :]
    x = _load_tile(x_ptr, t, b64 * stride_xb, offs_d, stride_xt, mask)
    gx = _load_tile(gx_ptr, t, b64 * stride_gxb, offs_d, stride_gxt, mask)
    ga = _load_tile(ga_ptr, t, b64 * stride_gab, offs_d, stride_gat, mask)
    i, r, a_u, z, a, m = _gates(gx, ga, w, keep, valid)
    return t, mask, keep & valid, x, i, r, a_u, z, a, m


@triton.jit
def _optional_row(ptr, b, D, offs_d, mask_d, PRESENT: tl.constexpr, BLOCK_D: tl.constexpr):
    """Row b of an optional fp32 [B, D] tensor (initial state, dL/d final state); 0 if absent."""
    if PRESENT:
        row = tl.load(ptr + b.to(tl.int64) * D + offs_d, mask=mask_d, other=0.0)
    else:
        row = tl.zeros([BLOCK_D], dtype=tl.float32)
    return row


@triton.jit
def _state_offsets(n, pid_b, B, D, offs_d):
    """Offsets into an fp32 [N, B, D] buffer (checkpoints, tile maps, partial sums)."""
    return (n * B + pid_b).to(tl.int64) * D + offs_d


@triton.jit
def _row(value, rows, index):
    """Row `index` of a [TILE, BLOCK_D] tile as a [BLOCK_D] vector."""
    return tl.sum(tl.where(rows[:, None] == index, value, 0.0), axis=0)


@triton.heuristics(_HAS_RESET)
@triton.jit(do_not_specialize=_SIZES)
def rglru_fwd_summary_kernel(
    x_ptr, gx_ptr, ga_ptr, w_ptr, reset_ptr, map_a_ptr, map_b_ptr,
    T, B, D,
    stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab, stride_rt, stride_rb,
    T_BUCKET,
    HAS_RESET: tl.constexpr, TILE: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Chunked pass 1: each tile's steps composed into h -> A h + B, stored as [tiles, B, D]."""
    pid_d, tile, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_d, mask_d, w = _channels(pid_d, D, w_ptr, BLOCK_D)
    t, mask, live, x, i, r, a_u, z, a, m = _tile_inputs(
        x_ptr, gx_ptr, ga_ptr, reset_ptr, w, tile, pid_b.to(tl.int64), offs_d, mask_d, T,
        stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab, stride_rt, stride_rb,
        HAS_RESET, TILE)
    # tl.reduce may reorder operands; an ordered scan keeps the non-commutative composition exact.
    cum_a, cum_b = tl.associative_scan((a, m * i * x), 0, _affine_combine)
    rows = tl.arange(0, TILE)
    offs = _state_offsets(tile, pid_b, B, D, offs_d)
    tl.store(map_a_ptr + offs, _row(cum_a, rows, TILE - 1), mask=mask_d)
    tl.store(map_b_ptr + offs, _row(cum_b, rows, TILE - 1), mask=mask_d)


@triton.heuristics({"HAS_INIT": _given("init_ptr")})
@triton.jit(do_not_specialize=["N", "B"])
def carry_scan_kernel(
    map_a_ptr, map_b_ptr, init_ptr, carries_ptr, final_ptr,
    N, B, D,
    HAS_INIT: tl.constexpr, REVERSE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Chunked pass 2: chain N affine maps c -> A_n c + B_n ([N, B, D] fp32) over n.

    carries[n] is the value entering map n, final the value after the last map; REVERSE walks n
    from N - 1 down to 0. Forward this turns tile maps into checkpoints; backward it carries
    dL/dh from the end of the sequence to every tile and to the initial state.
    """
    pid_d, pid_b = tl.program_id(0), tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    carry = _optional_row(init_ptr, pid_b, D, offs_d, mask_d, HAS_INIT, BLOCK_D)
    rows = tl.arange(0, BLOCK_N)
    for start in range(0, N, BLOCK_N):
        step = start + rows  # position in walking order
        n = N - 1 - step if REVERSE else step
        in_range = step < N
        offs = _state_offsets(n[:, None], pid_b, B, D, offs_d[None, :])
        mask = in_range[:, None] & mask_d[None, :]
        # Past N the maps are the identity, so the last row holds the carry after map N - 1.
        map_a = tl.load(map_a_ptr + offs, mask=mask, other=1.0)
        map_b = tl.load(map_b_ptr + offs, mask=mask, other=0.0)
        cum_a, cum_b = tl.associative_scan((map_a, map_b), 0, _affine_combine)
        after = cum_a * carry[None, :] + cum_b
        # The value entering map n is the one leaving the map walked just before it.
        first = N - 1 - start if REVERSE else start
        tl.store(carries_ptr + _state_offsets(first, pid_b, B, D, offs_d), carry, mask=mask_d)
        next_n = N - 2 - step if REVERSE else step + 1
        next_offs = _state_offsets(next_n[:, None], pid_b, B, D, offs_d[None, :])
        next_mask = (rows < BLOCK_N - 1)[:, None] & (step + 1 < N)[:, None] & mask_d[None, :]
        tl.store(carries_ptr + next_offs, after, mask=next_mask)
        carry = _row(after, rows, BLOCK_N - 1)
    tl.store(final_ptr + pid_b.to(tl.int64) * D + offs_d, carry, mask=mask_d)


@triton.heuristics({**_HAS_RESET, "HAS_H0": _given("h0_ptr")})
@triton.jit(do_not_specialize=_SIZES + ["NUM_TILES"])
def rglru_fwd_kernel(
    x_ptr, gx_ptr, ga_ptr, w_ptr, reset_ptr, h0_ptr, y_ptr, states_ptr, final_ptr,
    T, B, D, NUM_TILES,
    stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab, stride_rt, stride_rb,
    stride_yt, stride_yb,
    T_BUCKET,
    HAS_RESET: tl.constexpr, HAS_H0: tl.constexpr, SEQUENTIAL: tl.constexpr,
    TILE: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """y for a run of tiles.

    SEQUENTIAL: the program walks all tiles from the initial state and writes every checkpoint
    and the final state. Otherwise it runs one tile from its checkpoint (written by pass 2).
    """
    pid_d, pid_t, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_d, mask_d, w = _channels(pid_d, D, w_ptr, BLOCK_D)
    b64 = pid_b.to(tl.int64)
    rows = tl.arange(0, TILE)
    if SEQUENTIAL:
        first_tile = 0
        num_tiles = NUM_TILES
        carry = _optional_row(h0_ptr, pid_b, D, offs_d, mask_d, HAS_H0, BLOCK_D)
    else:
        first_tile = pid_t
        num_tiles = 1
        carry = tl.load(states_ptr + _state_offsets(pid_t, pid_b, B, D, offs_d), mask=mask_d)
    for k in range(num_tiles):
        tile = first_tile + k
        if SEQUENTIAL:
            tl.store(states_ptr + _state_offsets(tile, pid_b, B, D, offs_d), carry, mask=mask_d)
        t, mask, live, x, i, r, a_u, z, a, m = _tile_inputs(
            x_ptr, gx_ptr, ga_ptr, reset_ptr, w, tile, b64, offs_d, mask_d, T,
            stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab,
            stride_rt, stride_rb, HAS_RESET, TILE)
        cum_a, cum_b = tl.associative_scan((a, m * i * x), 0, _affine_combine)
        h = cum_a * carry[None, :] + cum_b
        _store_tile(y_ptr, h, t, b64 * stride_yb, offs_d, stride_yt, mask)
        # Padding rows are identity steps, so the last row is the state after the tile.
        carry = _row(h, rows, TILE - 1)
    if SEQUENTIAL:
        tl.store(final_ptr + b64 * D + offs_d, carry, mask=mask_d)


@triton.heuristics(_HAS_RESET)
@triton.jit(do_not_specialize=_SIZES)
def rglru_bwd_summary_kernel(
    ga_ptr, dy_ptr, w_ptr, reset_ptr, map_a_ptr, map_b_ptr,
    T, B, D,
    stride_gat, stride_gab, stride_dyt, stride_dyb, stride_rt, stride_rb,
    T_BUCKET,
    HAS_RESET: tl.constexpr, TILE: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Chunked backward pass 1: each tile as a map of k, the gradient that enters the state.

    With k_t = a_t g_t = a_t dy_t + a_t k_{t+1}, the tile sends k_first = A k_in + B leftwards;
    only gate_a, dy and the resets are read.
    """
    pid_d, tile, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_d, mask_d, w = _channels(pid_d, D, w_ptr, BLOCK_D)
    b64 = pid_b.to(tl.int64)
    t, valid, keep = _tile_rows(tile, T, HAS_RESET, reset_ptr, stride_rt, b64 * stride_rb, TILE)
    mask = valid & mask_d[None, :]
    ga = _load_tile(ga_ptr, t, b64 * stride_gab, offs_d, stride_gat, mask)
    dy = _load_tile(dy_ptr, t, b64 * stride_dyb, offs_d, stride_dyt, mask)
    a = tl.where(valid, tl.where(keep, tl.exp(tl.sigmoid(ga) * w[None, :]), 0.0), 1.0)
    cum_a, cum_b = tl.associative_scan((a, a * dy), 0, _affine_combine, reverse=True)
    rows = tl.arange(0, TILE)
    offs = _state_offsets(tile, pid_b, B, D, offs_d)
    tl.store(map_a_ptr + offs, _row(cum_a, rows, 0), mask=mask_d)
    tl.store(map_b_ptr + offs, _row(cum_b, rows, 0), mask=mask_d)


@triton.heuristics({**_HAS_RESET, "HAS_DFINAL": _given("dfinal_ptr")})
@triton.jit(do_not_specialize=_SIZES + ["NUM_TILES"])
def rglru_bwd_kernel(
    x_ptr, gx_ptr, ga_ptr, w_ptr, reset_ptr, dy_ptr, dfinal_ptr, states_ptr, k_in_ptr,
    dx_ptr, dgx_ptr, dga_ptr, dw_partial_ptr, dh0_ptr,
    T, B, D, NUM_TILES,
    stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab, stride_rt, stride_rb,
    stride_dyt, stride_dyb, stride_dxt, stride_dxb, stride_dgxt, stride_dgxb,
    stride_dgat, stride_dgab,
    T_BUCKET,
    HAS_RESET: tl.constexpr, HAS_DFINAL: tl.constexpr, SEQUENTIAL: tl.constexpr,
    TILE: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Gradients for a run of tiles, walked from the last to the first.

    Per tile: the states h are recomputed from the tile's checkpoint; g = dL/dh (total) comes
    from a reverse scan seeded with k_in = a g entering from the next tile. SEQUENTIAL seeds
    k_in with dL/d(final state) and carries it across tiles, ending with dL/dh0; otherwise
    k_in comes from the backward pass 2. dL/dw is summed over the program's rows into
    dw_partial[pid_t, b] (no atomics); the host sums the partials.
    """
    pid_d, pid_t, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_d, mask_d, w = _channels(pid_d, D, w_ptr, BLOCK_D)
    b64 = pid_b.to(tl.int64)
    rows = tl.arange(0, TILE)
    if SEQUENTIAL:
        last_tile = NUM_TILES - 1
        num_tiles = NUM_TILES
        k_in = _optional_row(dfinal_ptr, pid_b, D, offs_d, mask_d, HAS_DFINAL, BLOCK_D)
    else:
        last_tile = pid_t
        num_tiles = 1
        k_in = tl.load(k_in_ptr + _state_offsets(pid_t, pid_b, B, D, offs_d), mask=mask_d)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k in range(num_tiles):
        tile = last_tile - k
        t, mask, live, x, i, r, a_u, z, a, m = _tile_inputs(
            x_ptr, gx_ptr, ga_ptr, reset_ptr, w, tile, b64, offs_d, mask_d, T,
            stride_xt, stride_xb, stride_gxt, stride_gxb, stride_gat, stride_gab,
            stride_rt, stride_rb, HAS_RESET, TILE)
        dy = _load_tile(dy_ptr, t, b64 * stride_dyb, offs_d, stride_dyt, mask)
        b = m * i * x
        h_in = tl.load(states_ptr + _state_offsets(tile, pid_b, B, D, offs_d), mask=mask_d)
        cum_a, cum_b = tl.associative_scan((a, b), 0, _affine_combine)
        h = cum_a * h_in[None, :] + cum_b
        f, p, q = tl.associative_scan((a, tl.full(a.shape, 1.0, tl.float32), dy), 0,
                                      _grad_combine, reverse=True)
        g = p * k_in[None, :] + q

        grad_m = g * i * x
        dx = g * i * m
        dgx = g * x * m * i * (1.0 - i)
        # dL/dlog_a = dL/da * a. Through the state a_t h_{t-1} = h_t - b_t (no shifted tile
        # needed); through m = sqrt(1 - a^2) with the clipped sqrt gradient. Zero at resets,
        # where a and m are constants, and on padding rows.
        sqrt_grad = tl.rsqrt(tl.maximum(4.0 * z, MIN_4Z))
        grad_log_a = g * (h - b) - 2.0 * grad_m * sqrt_grad * a_u * a_u
        grad_log_a = tl.where(live, grad_log_a, 0.0)
        dga = grad_log_a * w[None, :] * r * (1.0 - r)
        dw += tl.sum(grad_log_a * r, axis=0)

        _store_tile(dx_ptr, dx, t, b64 * stride_dxb, offs_d, stride_dxt, mask)
        _store_tile(dgx_ptr, dgx, t, b64 * stride_dgxb, offs_d, stride_dgxt, mask)
        _store_tile(dga_ptr, dga, t, b64 * stride_dgab, offs_d, stride_dgat, mask)
        # What flows into the previous tile's last state: a_first * g_first.
        k_in = _row(a * g, rows, 0)
    tl.store(dw_partial_ptr + _state_offsets(pid_t, pid_b, B, D, offs_d), dw, mask=mask_d)
    if SEQUENTIAL:
        tl.store(dh0_ptr + b64 * D + offs_d, k_in, mask=mask_d)
