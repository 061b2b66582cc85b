"""Fixed-size generation state: what Hawk and Griffin carry instead of a growing KV cache.

Per recurrent layer: the last (conv_width - 1) Conv1D inputs and the fp32 RG-LRU state.
Per attention layer: a ring buffer of the last `window` keys and values (or fewer when the
cache is told it will never hold more tokens than that: `max_length`).
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
    # Head-major [B, Hkv, S, d] so that a decode step attends to the ring in place (contiguous
    # for SDPA); slot = position % S.
    keys: Tensor  # [B, Hkv, S, d]
    values: Tensor  # [B, Hkv, S, d]
    slot_positions: Tensor  # [S] long: absolute token index held by each slot, -1 if empty


LayerState = Union[RecurrentLayerState, AttentionLayerState]


class GriffinInferenceCache:
    """State of a batch of sequences being generated; every row advances together.

    Rows of different prompt lengths are left-padded by the caller; the padding is cut off from
    the real prompt by a document start (position id 0 at each row's first real token).

    max_length: the most tokens (prompt + generated) this cache will ever see, or None. Ring
    buffers then hold min(window, max_length) slots; feeding more tokens than that is an error.
    """

    def __init__(
        self,
        batch_size: int,
        device: Optional[torch.device] = None,
        max_length: Optional[int] = None,
    ):
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length={max_length} must be a positive number of tokens.")
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.max_length = max_length
        self.seen_tokens = 0  # absolute index of the next token (same for every row)
        self.last_tokens_since_start = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.layers: Dict[int, LayerState] = {}

    @property
    def has_history(self) -> bool:
        return self.seen_tokens > 0

    def attention_slots(self, window: int) -> int:
        """Ring-buffer length for an attention layer with this window."""
        return window if self.max_length is None else min(window, self.max_length)

    def check_room(self, window: int, num_tokens: int) -> None:
        """Fail before a chunk would overwrite keys that are still inside the window."""
        slots = self.attention_slots(window)
        if slots < window and self.seen_tokens + num_tokens > slots:
            raise ValueError(
                f"this cache was created with max_length={self.max_length} tokens but would "
                f"hold {self.seen_tokens + num_tokens}; create it with a larger max_length "
                "(prompt length + new tokens)."
            )

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
