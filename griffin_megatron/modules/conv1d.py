"""Causal depthwise Conv1D that never reads across a document start.

RecurrentGemma's HF code runs a plain padded nn.Conv1d, so in a packed sequence the first
(width - 1) tokens of a document still see the end of the previous one. Here a tap s steps back
only counts when s <= tokens_since_start (the DeepMind reference does the same).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from megatron.core.transformer.module import MegatronModule
from torch import Tensor

from ..config import GriffinConfig
from .channel_parallel import channel_sharded_state_dict, partitioned_parameter

CONV_INIT_VARIANCE = 0.01  # RecurrentGemma's w_init_variance_scale for the Conv1D


def causal_depthwise_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    tokens_since_start: Optional[Tensor] = None,
    initial_taps: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """y_t = bias + sum_k weight[:, k] * x_{t - (K-1) + k}, over taps inside the same document.

    Shapes: x [T, B, C]; weight [C, K] (HF's conv_1d.weight[:, 0, :]); bias [C];
    tokens_since_start [T, B] (None: no document starts inside the chunk and no history);
    initial_taps [K-1, B, C], the inputs before the chunk, oldest first (None: zeros).
    Returns y [T, B, C] and the last K-1 inputs [K-1, B, C] for the next chunk.
    """
    T, B, C = x.shape
    K = weight.shape[1]
    if initial_taps is None:
        initial_taps = x.new_zeros(K - 1, B, C)
    padded = torch.cat([initial_taps.to(x.dtype), x], dim=0)  # [T + K - 1, B, C]
    y = x * weight[:, K - 1]
    for shift in range(1, K):
        tap = padded[K - 1 - shift : K - 1 - shift + T] * weight[:, K - 1 - shift]
        if tokens_since_start is not None:
            tap = tap * (tokens_since_start >= shift).unsqueeze(-1).to(x.dtype)
        y = y + tap
    return y + bias, padded[T:]


def causal_depthwise_conv1d_step(
    x: Tensor, weight: Tensor, bias: Tensor, tokens_since_start: Tensor, taps: Tensor
) -> Tuple[Tensor, Tensor]:
    """The same convolution for one new token per row (generation): x [B, C], tokens_since_start
    [B], taps [K-1, B, C] -> y [B, C] and the new taps. One masked weighted sum over the window
    instead of a loop over taps."""
    K = weight.shape[1]
    window = torch.cat([taps.to(x.dtype), x.unsqueeze(0)], dim=0)  # [K, B, C], oldest first
    shifts = torch.arange(K - 1, -1, -1, device=x.device).unsqueeze(1)  # [K, 1]: steps back
    visible = (tokens_since_start.unsqueeze(0) >= shifts).unsqueeze(-1).to(x.dtype)  # [K, B, 1]
    y = torch.einsum("kbc,ck->bc", window * visible, weight.to(x.dtype))
    return y + bias, window[1:]


class CausalConv1d(MegatronModule):
    """Per-channel temporal convolution; channels are split across tensor-parallel ranks."""

    def __init__(self, config: GriffinConfig, channels: int, width: int):
        super().__init__(config=config)
        self.width = width
        std = math.sqrt(CONV_INIT_VARIANCE / width)
        self.weight = partitioned_parameter(
            config, (channels, width), lambda t: torch.nn.init.normal_(t, 0.0, std)
        )
        self.bias = partitioned_parameter(config, (channels,), torch.nn.init.zeros_)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        return channel_sharded_state_dict(self, prefix, sharded_offsets, metadata)

    def forward(
        self,
        x: Tensor,
        tokens_since_start: Optional[Tensor] = None,
        initial_taps: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """x [T, B, C] -> y [T, B, C] and the last K-1 inputs [K-1, B, C] (see
        causal_depthwise_conv1d); initial_taps continues from an earlier chunk."""
        return causal_depthwise_conv1d(x, self.weight, self.bias, tokens_since_start, initial_taps)

    def allocate_inference_cache(self, batch_size: int, dtype: torch.dtype, device) -> Tensor:
        """Empty taps [K-1, B, C/tp] for generation (masked until the document reaches them)."""
        return torch.zeros(self.width - 1, batch_size, self.weight.shape[0], dtype=dtype, device=device)

    def step(self, x: Tensor, tokens_since_start: Tensor, taps: Tensor) -> Tuple[Tensor, Tensor]:
        """One new token per row: x [B, C], tokens_since_start [B], taps [K-1, B, C] -> y [B, C]
        and the new taps."""
        return causal_depthwise_conv1d_step(x, self.weight, self.bias, tokens_since_start, taps)
