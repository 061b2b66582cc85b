"""Halos: the tokens just before this rank's shard, fetched from the ranks that hold them.

A Conv1D of width K needs the K - 1 inputs before the shard; a local attention window of W keys
needs the W - 1 keys and values before it. When a shard is shorter than the halo, the tokens come
from several previous ranks: rank r sends its last min(L, H - (j - 1) L) tokens to rank r + j,
for every j with something to send (L the shard length, H the halo). Point-to-point, so each
rank sends and receives about H tokens per layer whatever the sequence length.

The exchange is an autograd Function: the backward pass sends each halo's gradient back to the
rank that owns those tokens, where it adds to the gradient of its shard's tail.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .shards import ContextParallelShard


def _halo_pieces(halo: int, shard_length: int, rank: int, size: int) -> Tuple[List, List]:
    """(sends, receives) as lists of (peer CP rank, tokens): a rank j steps away contributes the
    last min(L, H - (j - 1) L) tokens of its shard. Receives are ordered oldest first."""
    sends, receives = [], []
    step = 1
    while (step - 1) * shard_length < halo:
        count = min(shard_length, halo - (step - 1) * shard_length)
        if rank + step < size:
            sends.append((rank + step, count))
        if rank - step >= 0:
            receives.append((rank - step, count))
        step += 1
    return sends, receives[::-1]


def _exchange(shard: ContextParallelShard, outgoing, incoming) -> None:
    """Post every send and receive at once (no ordering deadlock), then wait for all."""
    ops = [dist.P2POp(dist.isend, tensor, shard.global_ranks[peer], shard.group)
           for peer, tensor in outgoing]
    ops += [dist.P2POp(dist.irecv, tensor, shard.global_ranks[peer], shard.group)
            for peer, tensor in incoming]
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()


class _PreviousTokens(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, halo: int, shard: ContextParallelShard) -> Tensor:
        length = x.shape[0]
        sends, receives = _halo_pieces(halo, length, shard.rank, shard.size)
        ctx.shard, ctx.sends, ctx.receives, ctx.length = shard, sends, receives, length
        outgoing = [(peer, x[length - count:].contiguous()) for peer, count in sends]
        incoming = [(peer, x.new_empty((count, *x.shape[1:]))) for peer, count in receives]
        _exchange(shard, outgoing, incoming)
        if not incoming:
            return x.new_zeros((0, *x.shape[1:]))
        return torch.cat([tensor for _, tensor in incoming], dim=0)

    @staticmethod
    def backward(ctx, grad_halo: Tensor):
        # The halo's gradient goes back to its owners; the gradient of our tail comes from the
        # ranks we sent it to.
        counts = [count for _, count in ctx.receives]
        grad_pieces = torch.split(grad_halo.contiguous(), counts, dim=0) if counts else []
        outgoing = [(peer, piece.contiguous()) for (peer, _), piece in zip(ctx.receives, grad_pieces)]
        incoming = [(peer, grad_halo.new_empty((count, *grad_halo.shape[1:])))
                    for peer, count in ctx.sends]
        _exchange(ctx.shard, outgoing, incoming)
        grad_x = grad_halo.new_zeros((ctx.length, *grad_halo.shape[1:]))
        for (_, count), tensor in zip(ctx.sends, (t for _, t in incoming)):
            grad_x[ctx.length - count:] += tensor
        return grad_x, None, None


def previous_tokens(x: Tensor, halo: int, shard: ContextParallelShard) -> Tensor:
    """The up to `halo` tokens before this rank's shard, oldest first.

    x: this rank's shard [L, ...] (sequence first). Returns [min(halo, rank * L), ...]: rank 0
    gets an empty tensor, since nothing precedes the sequence.
    """
    if halo <= 0:
        return x[:0]
    return _PreviousTokens.apply(x, halo, shard)


def conv_halo(x: Tensor, width: int, shard: ContextParallelShard) -> Tensor:
    """The K - 1 Conv1D inputs before the shard [K - 1, B, C], zeros where the sequence has not
    started (masked anyway: the first document starts there)."""
    taps = previous_tokens(x, width - 1, shard)
    missing = width - 1 - taps.shape[0]
    if missing:
        taps = torch.cat([x.new_zeros((missing, *x.shape[1:])), taps], dim=0)
    return taps


def halo_length(halo: int, shard_length: int, shard: ContextParallelShard) -> int:
    """How many tokens `previous_tokens` returns: min(halo, rank * L) (rank 0 gets none)."""
    return max(0, min(halo, shard.rank * shard_length))


def key_value_halo(key: Tensor, value: Tensor, window: int, shard: ContextParallelShard):
    """The W - 1 keys and values before the shard ([P, B, Hk, d] each, P <= W - 1), in one
    exchange: under multi-query attention that is one head of each."""
    pair = previous_tokens(torch.cat([key, value], dim=-1), window - 1, shard)
    return pair.split([key.shape[-1], value.shape[-1]], dim=-1)
