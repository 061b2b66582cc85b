"""Megatron-Core's tensor-parallel linears and MLP, each with an explicit one-token `step`.

`forward` is Megatron's, unchanged: training, evaluation and prefill run it. `step` is the same
computation for generation (under torch.inference_mode, one token per row): the GEMM with the
layer's own weight and bias, and the layer's tensor-parallel communication through Megatron's
own mapping functions, without the autograd Functions, autocast wrappers and per-call checks
that forward pays. On a one-token CPU step those fixed costs were about three times the
arithmetic of each linear (benchmarks/RESULTS.md). Tests hold every step to its forward.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.tensor_parallel.mappings import (
    gather_from_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
)
from megatron.core.transformer.mlp import MLP
from torch import Tensor


def _spans_ranks(group) -> bool:
    return group is not None and group.size() > 1


def column_parallel_step(linear: ColumnParallelLinear, x: Tensor, weight: Optional[Tensor] = None
                         ) -> Tuple[Tensor, Optional[Tensor]]:
    """ColumnParallelLinear.forward's (output, bias) for generation: x [1, B, D] -> [1, B,
    out(/tp)]. `weight` stands in for a layer built without its own (GPTModel's output layer
    tied to the embedding), as forward's `weight=` does."""
    weight = linear.weight if weight is None else weight
    out = F.linear(x, weight, None if linear.skip_bias_add else linear.bias)
    if linear.gather_output and _spans_ranks(linear.tp_group):
        out = gather_from_tensor_model_parallel_region(out, group=linear.tp_group)
    return out, (linear.bias if linear.skip_bias_add else None)


class ColumnParallelLinearWithStep(ColumnParallelLinear):
    def step(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """forward's (output, bias) for generation: x [1, B, D] -> [1, B, out(/tp)]."""
        return column_parallel_step(self, x)


class RowParallelLinearWithStep(RowParallelLinear):
    def step(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """forward's (output, bias) for generation: x [1, B, in/tp] (already split, as
        input_is_parallel says) -> [1, B, out], summed over the tensor-parallel ranks."""
        out = F.linear(x, self.weight)
        if _spans_ranks(self.tp_group):
            out = reduce_from_tensor_model_parallel_region(out, group=self.tp_group)
        if self.skip_bias_add:
            return out, self.bias
        return (out + self.bias if self.bias is not None else out), None


class MLPWithStep(MLP):
    """Megatron's gated MLP: fc2(act(gate) * up) with [gate; up] = fc1(x)."""

    def step(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """forward's (output, bias) for generation, through the linears' own `step`."""
        hidden, bias = self.linear_fc1.step(x)
        if bias is not None:
            hidden = hidden + bias
        if self.config.gated_linear_unit:
            gate, up = torch.chunk(hidden, 2, dim=-1)
            hidden = self.config.activation_func(gate) * up
        else:
            hidden = self.config.activation_func(hidden)
        return self.linear_fc2.step(hidden)
