"""The RG-LRU layer: block-diagonal gate projections feeding the fused `rglru` op."""

from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple, Union

import torch
from megatron.core.transformer.module import MegatronModule
from torch import Tensor

from ..config import GriffinConfig
from ..ops.rglru import rglru, warm_up
from ..ops.rglru.torch_scan import rglru_step
from .channel_parallel import channel_sharded_state_dict, partitioned_parameter


def _init_decay_param(t: Tensor) -> None:
    """softplus(param) = -log(a0) with a0 = sqrt(u), u ~ U(0.9^2, 0.999^2), as released."""
    u = torch.empty_like(t).uniform_(0.9**2 + 1e-8, 0.999**2 + 1e-8)
    t.copy_(torch.log(torch.expm1(-0.5 * torch.log(u))))


class RGLRU(MegatronModule):
    """Real-Gated Linear Recurrent Unit (De et al. 2024, eq. 1-4).

    Parameter names and layouts match HF RecurrentGemma: `recurrent_param` [W],
    `{input,recurrent}_gate_weight` [H, bw, bw] applied as x @ W per block, biases [H, bw].
    Each tensor-parallel rank holds H / tp whole blocks, so the layer needs no communication.
    """

    def __init__(self, config: GriffinConfig, width: int, num_heads: int):
        super().__init__(config=config)
        block = width // num_heads
        self.block_width = block
        std = math.sqrt(1.0 / block)
        normal = lambda t: torch.nn.init.normal_(t, 0.0, std)  # noqa: E731
        self.recurrent_param = partitioned_parameter(config, (width,), _init_decay_param)
        self.input_gate_weight = partitioned_parameter(config, (num_heads, block, block), normal)
        self.input_gate_bias = partitioned_parameter(config, (num_heads, block), torch.nn.init.zeros_)
        self.recurrent_gate_weight = partitioned_parameter(config, (num_heads, block, block), normal)
        self.recurrent_gate_bias = partitioned_parameter(
            config, (num_heads, block), torch.nn.init.zeros_
        )

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        return channel_sharded_state_dict(self, prefix, sharded_offsets, metadata)

    def gate_preactivations(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Both gates' pre-activations, one batched matmul each: [T, B, W] -> 2 x [T, B, W].

        Two matmuls rather than one over concatenated weights: the concatenation would copy
        both gate matrices on every call, which dominates a one-token decode step.
        """
        T, B, W = x.shape
        heads, block = self.input_gate_bias.shape
        per_head = x.reshape(T * B, heads, block).transpose(0, 1)  # [H, TB, bw]

        def gate(weight: Tensor, bias: Tensor) -> Tensor:
            out = torch.baddbmm(bias.unsqueeze(1).to(x.dtype), per_head, weight.to(x.dtype))
            return out.transpose(0, 1).reshape(T, B, W)  # [H, TB, bw] -> [T, B, W]

        return (
            gate(self.input_gate_weight, self.input_gate_bias),
            gate(self.recurrent_gate_weight, self.recurrent_gate_bias),
        )

    def forward(
        self,
        x: Tensor,
        reset: Optional[Tensor] = None,
        initial_state: Optional[Tensor] = None,
        output_final_state: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """x [T, B, W/tp] -> y [T, B, W/tp] and, with output_final_state, the fp32 state [B, W/tp]."""
        gate_x, gate_a = self.gate_preactivations(x)
        return rglru(
            x,
            gate_x,
            gate_a,
            self.recurrent_param,
            reset=reset,
            initial_state=initial_state,
            output_final_state=output_final_state,
            backend=self.config.rglru_backend,
            c=self.config.rglru_c,
        )

    def allocate_inference_cache(self, batch_size: int, device) -> Tensor:
        """Zero state [B, W/tp] in fp32 (the recurrence is accumulated in fp32)."""
        return torch.zeros(batch_size, self.recurrent_param.shape[0], dtype=torch.float32, device=device)

    def step(self, x: Tensor, reset: Optional[Tensor], state: Tensor) -> Tuple[Tensor, Tensor]:
        """One new token per row, for generation: x [B, W/tp], reset [B] (or None), fp32 state
        [B, W/tp] -> (y [B, W/tp], new state).

        The same math as a T = 1 scan, without the op's validation and autograd Function (whose
        fixed costs dominate one token; its bounded sqrt gradient is not needed at inference).
        """
        gate_x, gate_a = self.gate_preactivations(x.unsqueeze(0))
        keep = None if reset is None else (~reset).to(state.dtype).unsqueeze(-1)
        return rglru_step(x, gate_x[0], gate_a[0], self.recurrent_param, state, keep, self.config.rglru_c)


def warm_up_kernels(model: Union[torch.nn.Module, Iterable[torch.nn.Module]], micro_batch: int,
                    seq_len: int, backward: bool = True) -> None:
    """Compile and tune the RG-LRU kernels of every RGLRU layer in `model` (a module or a list
    of model chunks) for a training (backward=True) or prefill call of [seq_len, micro_batch]
    tokens.

    Call before the first step and before any CUDA-graph capture (kernels are never timed
    inside a step). Layers on a CPU, or whose backend is not Triton, need nothing: a cheap no-op.
    """
    chunks = [model] if isinstance(model, torch.nn.Module) else list(model)
    shapes = set()
    for chunk in chunks:
        for layer in chunk.modules():
            if not isinstance(layer, RGLRU):
                continue
            config, device = layer.config, layer.recurrent_param.device
            if config.rglru_backend == "torch" or device.type != "cuda":
                continue
            # The op sees the channels of this tensor-parallel rank and the tokens of this
            # context-parallel rank, in the activations' dtype, which is the gate weights' one
            # (Float16Module casts them with the activations).
            T = seq_len // config.context_parallel_size
            shapes.add((T, micro_batch, layer.recurrent_param.shape[0],
                        layer.input_gate_weight.dtype, device))
    for T, B, D, dtype, device in sorted(shapes, key=str):
        warm_up([(T, B, D)], dtype, device, backward=backward)
