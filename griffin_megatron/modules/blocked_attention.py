"""The blocked kernel of local attention: sliding-window attention in plain PyTorch whose cost
grows with T x W, never T^2. Queries are cut into blocks of Bq rows, and each block attends to the
Bq + W - 1 keys that can reach it, through one batched `scaled_dot_product_attention` call with a
boolean mask.

It sits below both of its callers, `LocalWindowedAttention` (local_attention.py) and context
parallelism's `windowed_attention` (context_parallel/layers.py), as flex_attention.py does for
the FlexAttention kernel.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_BLOCK = 64


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """[N, Hq, Tq, d] x [N, Hk, Tk, d] with a boolean [N, 1, Tq, Tk] mask (True = attend)."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1]
    )


def local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    scale: float,
    tokens_since_start: Optional[Tensor] = None,
    num_past: int = 0,
    block_size: Optional[int] = None,
) -> Tensor:
    """Sliding-window attention over position-contiguous keys.

    Shapes: q [Tq, B, Hq, d]; k, v [Tk, B, Hk, d] with Tk = num_past + Tq, where query i is
    key num_past + i (the keys before it are earlier tokens, e.g. from a cache).
    tokens_since_start: [Tq, B], how far back the query's document reaches (None: no limit).
    Returns [Tq, B, Hq, d].
    """
    Tq, B, Hq, d = q.shape
    Tk = k.shape[0]
    P, W = num_past, window
    assert Tk == P + Tq, (Tk, P, Tq)
    Bq = block_size or min(Tq, max(W, MIN_BLOCK))
    qh, kh, vh = (t.permute(1, 2, 0, 3) for t in (q, k, v))  # [B, H, T, d]

    if Tk <= Bq + W - 1:
        # One block: every query can reach every key, so a dense [Tq, Tk] mask is at most Bq x 2W.
        query_index = P + torch.arange(Tq, device=q.device)
        rel = query_index.unsqueeze(1) - torch.arange(Tk, device=q.device)
        allowed = ((rel >= 0) & (rel < W)).unsqueeze(0)  # [1, Tq, Tk]
        if tokens_since_start is not None:
            allowed = allowed & (rel.unsqueeze(0) <= tokens_since_start.t().unsqueeze(-1))
        out = _sdpa(qh, kh, vh, allowed.unsqueeze(1), scale)  # [B, Hq, Tq, d]
        return out.permute(2, 0, 1, 3)

    num_blocks = math.ceil(Tq / Bq)
    Tq_pad = num_blocks * Bq
    L = Bq + W - 1  # keys that can reach one query block
    pad_q = Tq_pad - Tq
    qh = F.pad(qh, (0, 0, 0, pad_q))
    # Keys padded by W - 1 in front (before position 0) and pad_q behind; block b then reads
    # padded keys [P + b * Bq, P + b * Bq + L).
    kh = F.pad(kh, (0, 0, W - 1, pad_q))[:, :, P:]
    vh = F.pad(vh, (0, 0, W - 1, pad_q))[:, :, P:]
    k_blocks = kh.unfold(2, L, Bq).permute(0, 2, 1, 4, 3)  # [B, nb, Hk, L, d]
    v_blocks = vh.unfold(2, L, Bq).permute(0, 2, 1, 4, 3)
    q_blocks = qh.reshape(B, Hq, num_blocks, Bq, d).transpose(1, 2)  # [B, nb, Hq, Bq, d]

    r = torch.arange(Bq, device=q.device).unsqueeze(1)
    c = torch.arange(L, device=q.device)
    rel = r - c + (W - 1)  # query offset minus key offset; the same for every block
    allowed = ((rel >= 0) & (rel < W)).view(1, 1, Bq, L)
    block_start = torch.arange(num_blocks, device=q.device) * Bq
    key_index = P + block_start.view(num_blocks, 1) + c - (W - 1)  # [nb, L] index into k
    valid = (key_index >= 0) & (key_index < Tk)
    allowed = allowed & valid.view(1, num_blocks, 1, L)
    if tokens_since_start is not None:
        since = F.pad(tokens_since_start.t(), (0, pad_q), value=W)  # [B, Tq_pad]
        allowed = allowed & (rel.view(1, 1, Bq, L) <= since.view(B, num_blocks, Bq, 1))
    # Padding query rows attend to everything in reach so that no row is empty (no NaN).
    is_pad_row = (block_start.view(num_blocks, 1) + r.view(1, Bq)) >= Tq  # [nb, Bq]
    allowed = allowed | is_pad_row.view(1, num_blocks, Bq, 1)
    allowed = allowed.expand(B, num_blocks, Bq, L)

    out = _sdpa(
        q_blocks.reshape(B * num_blocks, Hq, Bq, d),
        k_blocks.reshape(B * num_blocks, -1, L, d),
        v_blocks.reshape(B * num_blocks, -1, L, d),
        allowed.reshape(B * num_blocks, 1, Bq, L),
        scale,
    )  # [B * nb, Hq, Bq, d]
    out = out.view(B, num_blocks, Hq, Bq, d).permute(1, 3, 0, 2, 4).reshape(Tq_pad, B, Hq, d)
    return out[:Tq]
