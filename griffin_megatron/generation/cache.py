"""Fixed-size generation state: what Hawk and Griffin carry instead of a growing KV cache.

The cache is a container; each layer creates its own state (its temporal block's) the first
time it sees the cache (`allocate_inference_cache`, as in mamba_ssm): a recurrent block the last
(conv_width - 1) Conv1D inputs and the fp32 RG-LRU state (`RecurrentBlockState`), an attention
block a ring buffer of the last `window` keys and values (`KVRing`; fewer slots when the cache
is told it will never hold more tokens than that: `max_length`). Its size stops growing once
the context passes the attention window.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor

from ..errors import ConfigError


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
            raise ConfigError(f"max_length={max_length} must be a positive number of tokens.")
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.max_length = max_length
        self.seen_tokens = 0  # absolute index of the next token (same for every row)
        self.last_tokens_since_start = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.layers: Dict[int, Any] = {}  # layer number -> the state its temporal block made

    @property
    def has_history(self) -> bool:
        return self.seen_tokens > 0

    def carried_tokens_since_start(self) -> Optional[Tensor]:
        """[B]: tokens since the document start of the last token seen, or None before any."""
        return self.last_tokens_since_start if self.has_history else None

    def layer_state(self, layer_number: int, allocate: Callable[[], Any]) -> Any:
        """The state of one layer, made by `allocate()` the first time the layer asks."""
        state = self.layers.get(layer_number)
        if state is None:
            state = self.layers[layer_number] = allocate()
        return state

    def check_room(self, num_tokens: int) -> None:
        """Fail before a chunk would take the cache past max_length tokens."""
        if self.max_length is not None and self.seen_tokens + num_tokens > self.max_length:
            raise ConfigError(
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
                if isinstance(tensor, Tensor):
                    total += tensor.numel() * tensor.element_size()
        return total
