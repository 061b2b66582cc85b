"""The RG-LRU across context-parallel ranks, exact in the forward and the backward pass.

The recurrence h_t = a_t h_{t-1} + b_t is a chain of affine maps, so a shard's outputs from the
true incoming state h_in are its outputs from a zero state plus P_t h_in, with P_t the product of
the decays a_1..a_t inside the shard (0 from a document start on, since a = 0 there):

    y_t = y0_t + P_t * h_in

Each rank scans its shard from zero (the fused op, which also returns the end state), the ranks
all-gather one (total decay P_L, end state) pair of [B, W] each, and rank r folds its
predecessors' pairs in order: h_in(0) = 0, h_in(r + 1) = P_L(r) h_in(r) + h_end(r). The
correction is computed in fp32. The exchange is an autograd Function whose backward pass sends
each rank's share of the gradient back to the earlier ranks' decays and end states.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.rglru import rglru
from ..ops.rglru.reference import compute_dtype_for
from .shards import ContextParallelShard


def shard_decay_products(gate_a: Tensor, a_param: Tensor, reset: Optional[Tensor], c: float) -> Tensor:
    """P_t = prod_{s <= t} a_s over the shard [T, B, W], in fp32 (fp64 for fp64 inputs), with
    a = exp(-c * sigmoid(gate_a) * softplus(a_param)) and a = 0 at a document start: the same
    decay the RG-LRU op uses."""
    dtype = compute_dtype_for(gate_a)
    decay = torch.exp(-c * torch.sigmoid(gate_a.to(dtype)) * F.softplus(a_param.to(dtype)))
    if reset is not None:
        decay = decay * (~reset).to(dtype).unsqueeze(-1)
    return torch.cumprod(decay, dim=0)


class _IncomingState(torch.autograd.Function):
    """h_in of this rank from every rank's (total decay A, end state e) pair.

    Forward: all-gather the pairs, fold the earlier ranks' in order.
    Backward: h_in(r) = sum_{j<r} (prod_{j<k<r} A_k) e_j, so walking back from r - 1 with
    G = dL/dh_in: dL/de_k += G, dL/dA_k += G * h_in(k), then G *= A_k. Every rank holds such
    contributions for all earlier ranks; one all-reduce sums them and each keeps its own.
    """

    @staticmethod
    def forward(ctx, total_decay: Tensor, end_state: Tensor, shard: ContextParallelShard) -> Tensor:
        mine = torch.stack([total_decay, end_state.to(total_decay.dtype)])  # [2, B, W]
        pairs = [torch.empty_like(mine) for _ in range(shard.size)]
        torch.distributed.all_gather(pairs, mine, group=shard.group)
        states = [torch.zeros_like(total_decay)]  # states[k]: the state before rank k's shard
        for decay, end in pairs[: shard.rank]:
            states.append(decay * states[-1] + end)
        ctx.shard = shard
        ctx.save_for_backward(*[pair[0] for pair in pairs[: shard.rank]], *states[: shard.rank])
        ctx.end_dtype = end_state.dtype
        return states[-1]

    @staticmethod
    def backward(ctx, grad_state: Tensor):
        shard, r = ctx.shard, ctx.shard.rank
        saved = ctx.saved_tensors
        decays, states = saved[:r], saved[r:]
        contributions = grad_state.new_zeros((shard.size, 2, *grad_state.shape))
        carried = grad_state
        for k in range(r - 1, -1, -1):
            contributions[k, 0] = carried * states[k]
            contributions[k, 1] = carried
            carried = carried * decays[k]
        torch.distributed.all_reduce(contributions, group=shard.group)
        own = contributions[shard.rank]
        return own[0], own[1].to(ctx.end_dtype), None


def incoming_state(total_decay: Tensor, end_state: Tensor, shard: ContextParallelShard) -> Tensor:
    """The true state before this rank's shard [B, W] (zeros on rank 0), exchanging one
    [2, B, W] pair per rank; differentiable on every rank (every rank joins the backward)."""
    return _IncomingState.apply(total_decay, end_state, shard)


def rglru_across_ranks(
    x: Tensor,
    gate_x: Tensor,
    gate_a: Tensor,
    a_param: Tensor,
    *,
    reset: Optional[Tensor],
    shard: ContextParallelShard,
    backend: str,
    c: float,
) -> Tensor:
    """The RG-LRU outputs [T/C, B, W] of this rank's shard as if the whole sequence ran on one
    rank. Same arguments as `ops.rglru.rglru` for the shard, plus the shard."""
    y0, end_state = rglru(x, gate_x, gate_a, a_param, reset=reset, output_final_state=True,
                          backend=backend, c=c)
    decay = shard_decay_products(gate_a, a_param, reset, c)
    h_in = incoming_state(decay[-1], end_state, shard)
    # Applied on rank 0 too (h_in = 0 there), so every rank takes part in the backward exchange.
    return (y0.to(decay.dtype) + decay * h_in).to(y0.dtype)
