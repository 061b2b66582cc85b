"""Griffin's recurrent block: the temporal-mixing block of Hawk and of two in three Griffin layers.

    y = act(linear_y(x))   (act: config.activation_func, GeLU-tanh in RecurrentGemma)
    u = linear_x(x) -> causal depthwise Conv1D -> RG-LRU
    out = linear_out(u * y)

linear_x and linear_y are one column-parallel GEMM (`linear_in`, output [x; y] per rank, like
Megatron's GLU fc1), linear_out is row-parallel, and the Conv1D and RG-LRU work per channel on
whole gate blocks: with tensor parallelism the block needs no communication of its own.
It sits in TransformerLayer's `self_attention` slot and accepts that slot's arguments.

For generation its layer's `prefill` / `step` (GriffinLayer, griffin_layer.py) call the block's
`prefill` for a chunk of tokens and `step` for one token per row, each continuing from and
updating the block's own `RecurrentBlockState` (made by `allocate_inference_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.utils import init_method_normal
from torch import Tensor

from ..config import GriffinConfig
from ..context_parallel import layers as context_parallel_layers
from ..sequence import GriffinSequenceParams


@dataclass
class RecurrentBlockState:
    """A recurrent layer's generation state (per tensor-parallel rank: C = lru_width / tp)."""

    conv_taps: Tensor  # [conv_width - 1, B, C]: the most recent Conv1D inputs, oldest first
    rglru_state: Tensor  # [B, C] fp32


@dataclass
class RecurrentBlockSubmodules:
    linear_in: Union[ModuleSpec, type] = None  # column-parallel D -> 2 * lru_width, [x; y]
    conv: Union[ModuleSpec, type] = None  # causal depthwise Conv1D over the x branch
    rg_lru: Union[ModuleSpec, type] = None  # the gated linear recurrence
    linear_out: Union[ModuleSpec, type] = None  # row-parallel lru_width -> D


class RecurrentBlock(MegatronModule):
    def __init__(
        self,
        config: GriffinConfig,
        submodules: RecurrentBlockSubmodules,
        layer_number: int,
        **kwargs,
    ):
        super().__init__(config=config)
        self.layer_number = layer_number
        width = config.lru_width
        self.linear_in = build_module(
            submodules.linear_in,
            config.hidden_size,
            2 * width,
            config=config,
            init_method=config.init_method,
            gather_output=False,
            bias=True,
            skip_bias_add=False,
            is_expert=False,
            tp_comm_buffer_name="recurrent_in",
            stride=2,  # each rank holds [x_r; y_r], so checkpoints reshard like Megatron's GLU fc1
        )
        self.conv = build_module(submodules.conv, config=config, channels=width, width=config.conv_width)
        self.rg_lru = build_module(
            submodules.rg_lru, config=config, width=width, num_heads=config.rglru_num_heads
        )
        # Depth-scaled init of the block output: variance 2 / num_layers over the fan-in.
        out_std = (2.0 / config.num_layers / width) ** 0.5
        self.linear_out = build_module(
            submodules.linear_out,
            width,
            config.hidden_size,
            config=config,
            init_method=init_method_normal(out_std),
            bias=True,
            input_is_parallel=True,
            skip_bias_add=True,
            is_expert=False,
            tp_comm_buffer_name="recurrent_out",
        )

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Optional[Tensor] = None,
        packed_seq_params: Optional[GriffinSequenceParams] = None,
        **unused_attention_kwargs,
    ):
        """hidden_states [T(/tp under sequence parallelism), B, D] -> (output, bias)."""
        xy, _ = self.linear_in(hidden_states)  # [T, B, 2 * W/tp]
        return self.linear_out(self.temporal_mix(xy, packed_seq_params))

    def temporal_mix(
        self,
        xy: Tensor,
        seq: Optional[GriffinSequenceParams],
        state: Optional[RecurrentBlockState] = None,
    ) -> Tensor:
        """[x; y] from linear_in [T, B, 2 * W/tp] -> conv + RG-LRU of x, gated by y [T, B, W/tp].

        state: continue from it and update it in place (generation), or None (a fresh sequence).
        """
        x, y = xy.chunk(2, dim=-1)
        y = self.config.activation_func(y)
        if seq is not None and seq.context_parallel is not None:
            return context_parallel_layers.recurrent_mix(self.conv, self.rg_lru, x, seq) * y

        reset = seq.reset if seq is not None else None
        since_start = seq.tokens_since_start if seq is not None else None

        x, conv_taps = self.conv(x, since_start, state.conv_taps if state is not None else None)
        x, rglru_state = self.rg_lru(
            x,
            reset=reset,
            initial_state=state.rglru_state if state is not None else None,
            output_final_state=state is not None,
        )
        if state is not None:
            state.conv_taps, state.rglru_state = conv_taps, rglru_state
        return x * y

    def allocate_inference_cache(
        self, batch_size: int, max_length: Optional[int], dtype: torch.dtype, device
    ) -> RecurrentBlockState:
        """Empty generation state for batch_size rows (taps in the activation dtype); its size
        does not depend on max_length."""
        return RecurrentBlockState(
            conv_taps=self.conv.allocate_inference_cache(batch_size, dtype, device),
            rglru_state=self.rg_lru.allocate_inference_cache(batch_size, device),
        )

    def prefill(self, hidden_states: Tensor, state: RecurrentBlockState, seq: GriffinSequenceParams,
                rotary_pos_emb: Optional[Tensor] = None):
        """A chunk [T, B, D] continuing from `state` (updated) -> (output, bias) as forward."""
        xy, _ = self.linear_in(hidden_states)
        return self.linear_out(self.temporal_mix(xy, seq, state))

    def step(self, hidden_states: Tensor, state: RecurrentBlockState, seq: GriffinSequenceParams,
             rotary_pos_emb: Optional[Tensor] = None):
        """One token per row [1, B, D] continuing from `state` (updated) -> (output, bias)."""
        xy, _ = self.linear_in.step(hidden_states)
        x, y = xy[0].chunk(2, dim=-1)  # [B, W/tp] each
        x, state.conv_taps = self.conv.step(x, seq.tokens_since_start[0], state.conv_taps)
        x, state.rglru_state = self.rg_lru.step(x, seq.reset[0], state.rglru_state)
        return self.linear_out.step((x * self.config.activation_func(y)).unsqueeze(0))

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        sharded = {}
        for name, module in self.named_children():
            sub = module.sharded_state_dict(f"{prefix}{name}.", sharded_offsets, metadata)
            if name == "linear_in":
                singleton = (metadata or {}).get("singleton_local_shards", False)
                for key in (f"{prefix}{name}.weight", f"{prefix}{name}.bias"):
                    if key in sub:
                        sub[key] = apply_swiglu_sharded_factory(sub[key], sharded_offsets, singleton)
            sharded.update(sub)
        return sharded
