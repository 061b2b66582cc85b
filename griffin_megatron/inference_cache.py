"""Fixed-size generation state: what Hawk and Griffin carry instead of a growing KV cache.

Per recurrent layer: the last (conv_width - 1) Conv1D inputs and the fp32 RG-LRU state.
Per attention layer: a ring buffer of the last (window - 1) keys and values.
Its size stops growing once the context passes the attention window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch
from torch import Tensor


@dataclass
class RecurrentLayerState:
    conv_taps: Tensor  # [conv_width - 1, B, C]: the most recent Conv1D inputs, oldest first
    rglru_state: Tensor  # [B, C] fp32


@dataclass
class AttentionLayerState:
    keys: Tensor  # [S, B, Hkv, d] ring buffer, S = window - 1 slots, slot = position % S
    values: Tensor  # [S, B, Hkv, d]
    slot_positions: Tensor  # [S] long: absolute token index held by each slot, -1 if empty


LayerState = Union[RecurrentLayerState, AttentionLayerState]


class GriffinInferenceCache:
    """State of a batch of sequences being generated; every row advances together.

    Rows of different prompt lengths are left-padded by the caller; the padding is cut off from
    the real prompt by a document start (position id 0 at each row's first real token).
    """

    def __init__(self, batch_size: int, device: Optional[torch.device] = None):
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seen_tokens = 0  # absolute index of the next token (same for every row)
        self.last_tokens_since_start = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.layers: Dict[int, LayerState] = {}

    @property
    def has_history(self) -> bool:
        return self.seen_tokens > 0

    def advance(self, tokens_since_start: Tensor) -> None:
        """Record a processed chunk: tokens_since_start is the chunk's [T, B] tensor."""
        self.seen_tokens += tokens_since_start.shape[0]
        self.last_tokens_since_start = tokens_since_start[-1].to(self.device)

    def nbytes(self) -> int:
        """Bytes held for the whole batch (divide by batch_size for per-sequence bytes)."""
        total = self.last_tokens_since_start.numel() * self.last_tokens_since_start.element_size()
        for state in self.layers.values():
            for tensor in vars(state).values():
                total += tensor.numel() * tensor.element_size()
        return total
