"""FlexAttention as the local backend's second core-attention implementation.

Without Transformer Engine, a GPU gets no flash kernel for the blocked path: SDPA's flash kernel
refuses any mask and its memory-efficient kernel refuses GQA, so a boolean-masked multi-query
call falls to cuDNN where torch prefers it, or else to the math kernel, which materialises fp32
scores. FlexAttention
(`torch.nn.attention.flex_attention`, compiled for CUDA) skips whole tiles from a `BlockMask`
and takes grouped key/value heads natively (`enable_gqa=True`), as torchtitan does for document
masks.

One `LocalAttentionMask` is built per forward (sequence.py's `with_flex_mask`) and shared by
every attention layer. Query i is key `num_past + i`; the keys before the queries are earlier
tokens (a context-parallel halo, a generation cache). Query i may see key j iff

    first_key[i] <= j <= num_past + i,   first_key[i] = num_past + i - min(W - 1, since[i])

with `since` the sequence params' tokens_since_start: causal, within the window of W keys (HF's
meaning, itself included), and within the query's document. Each query row's admitted keys are
one interval whose ends never move back from row to row, so whether a (query tile, key tile)
pair is empty, partial or full follows from the tile's first and last rows alone: the
`BlockMask` is built from [B, query tiles, key tiles] comparisons, never from a dense
[T, T] mask.

`choose_local_attention` turns the run setting (`auto`, `flex`, `blocked`) into the
implementation for a device, logging the automatic choice once.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError

logger = logging.getLogger(__name__)

BLOCK = 128  # FlexAttention's default tile (query and key rows per block)
_logged_choices = set()
_compiled_flex = None


@dataclass
class LocalAttentionMask:
    """The BlockMask of one forward and the number of keys before the queries it was built for."""

    block_mask: object  # torch.nn.attention.flex_attention.BlockMask
    num_past: int


def choose_local_attention(choice: str, device: torch.device) -> Tuple[str, str]:
    """("flex" | "blocked", why) for the run setting `choice` on tensors of `device`.

    auto: flex on CUDA (the fused kernel; the blocked path gets cuDNN or SDPA's math kernel
    there), blocked on a CPU (PyTorch has no FlexAttention backward on a CPU, and a compiled
    CPU forward costs about 30 s of compiling per new shape). The automatic choice is logged
    once per device type.
    """
    if choice != "auto":
        return choice, "chosen with --local-attention"
    if device.type == "cuda":
        impl, why = "flex", "auto on cuda: the fused kernel without Transformer Engine"
    else:
        impl, why = "blocked", f"auto on {device.type}: PyTorch has no FlexAttention backward there"
    if device.type not in _logged_choices:
        _logged_choices.add(device.type)
        logger.info("local attention: %s (%s)", impl, why)
    return impl, why


def describe_local_attention(choice: str, backend: str, has_attention: bool,
                             device: torch.device) -> str:
    """The one line a command prints about the attention its model runs, and why."""
    if not has_attention:
        return "local attention: none (the model has no attention layers)"
    if backend != "local":
        return f"local attention: {backend} (Transformer Engine's windowed attention)"
    impl, why = choose_local_attention(choice, device)
    return f"local attention: {impl} ({why})"


def check_local_attention_choice(choice: str, backend: str, training: bool = False) -> None:
    """Refuse a choice that cannot be honoured, in one sentence: an explicit implementation with
    the te backend (whose attention is Transformer Engine's), and flex for training without
    CUDA (PyTorch has no FlexAttention backward on a CPU)."""
    if choice != "auto" and backend != "local":
        raise ConfigError(
            f"--local-attention {choice} chooses the local backend's attention, but --backend "
            f"{backend} runs Transformer Engine's; drop --local-attention or use --backend local."
        )
    if training and choice == "flex" and not torch.cuda.is_available():
        raise ConfigError(
            "--local-attention flex cannot train without CUDA: PyTorch has no FlexAttention "
            "backward on a CPU; use --local-attention blocked (or auto) on a CPU."
        )


def _first_keys(tokens_since_start: Tensor, window: int, num_past: int) -> Tensor:
    """[Tq, B] tokens since the document start -> [B, Tq] index of each query's first visible
    key (the last is the query itself, at num_past + i)."""
    Tq = tokens_since_start.shape[0]
    query_key = num_past + torch.arange(Tq, device=tokens_since_start.device)  # [Tq]
    reach = torch.clamp(tokens_since_start.t(), max=window - 1)  # [B, Tq]
    return query_key.unsqueeze(0) - reach


def _ordered(blocks: Tensor) -> Tuple[Tensor, Tensor]:
    """[B, 1, nq, nk] bool -> (count [B, 1, nq], indices [B, 1, nq, nk]) with the marked key
    tiles first, in order: the layout BlockMask stores."""
    counts = blocks.sum(-1, dtype=torch.int32)
    indices = torch.argsort(blocks.to(torch.int8), dim=-1, descending=True, stable=True)
    return counts, indices.to(torch.int32)


def local_attention_mask(tokens_since_start: Tensor, window: int, num_past: int = 0,
                         block_size: int = BLOCK) -> LocalAttentionMask:
    """The BlockMask of causal, windowed, same-document attention for a chunk of queries.

    tokens_since_start: [Tq, B] (GriffinSequenceParams.tokens_since_start); the key tensor the
    mask is used with holds num_past + Tq tokens, the queries being its last Tq.
    """
    from torch.nn.attention.flex_attention import BlockMask

    Tq, B = tokens_since_start.shape
    Tk = num_past + Tq
    device = tokens_since_start.device
    first = _first_keys(tokens_since_start, window, num_past)  # [B, Tq]
    nq, nk = -(-Tq // block_size), -(-Tk // block_size)
    # Rows past Tq (the last tile's padding, which the kernel's mask_mod may read) repeat the
    # last row.
    padded = torch.cat([first, first[:, -1:].expand(B, nq * block_size - Tq)], dim=1)
    last_query = torch.clamp(torch.arange(nq, device=device) * block_size + block_size - 1,
                             max=Tq - 1)
    first_row_lo = padded[:, ::block_size]  # [B, nq]
    first_row_hi = num_past + torch.arange(nq, device=device) * block_size  # [nq]
    last_row_lo = first.gather(1, last_query.unsqueeze(0).expand(B, nq))  # [B, nq]
    last_row_hi = num_past + last_query  # [nq]
    key_lo = torch.arange(nk, device=device) * block_size  # [nk]
    key_hi = torch.clamp(key_lo + block_size - 1, max=Tk - 1)
    # Rows of a tile see the union [first row's lo, last row's hi] (contiguous: each row's
    # interval starts at or after the previous row's and ends one further); the tile pair is
    # full when even the last row's interval starts at the key tile and the first row's ends
    # at or after the key tile's end.
    reaches = ((first_row_lo.unsqueeze(-1) <= key_hi)
               & (last_row_hi.view(1, nq, 1) >= key_lo))  # [B, nq, nk]
    full = ((last_row_lo.unsqueeze(-1) <= key_lo)
            & (first_row_hi.view(1, nq, 1) >= key_hi))
    partial = reaches & ~full
    # Tensors, not Python numbers, in the closure: torch.compile reads tensors as inputs but
    # guards on captured numbers, which would compile once per cache depth or halo length.
    # (torch.full, not torch.tensor: a fill on the device, no host-to-device copy to wait for.)
    first_key = padded.to(torch.int32)
    past = torch.full((), num_past, dtype=torch.int32, device=device)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx >= first_key[b, q_idx]) & (kv_idx <= q_idx + past)

    counts, indices = _ordered(partial.unsqueeze(1))
    full_counts, full_indices = _ordered(full.unsqueeze(1))
    block_mask = BlockMask.from_kv_blocks(
        counts, indices, full_counts, full_indices, BLOCK_SIZE=block_size, mask_mod=mask_mod,
        seq_lengths=(Tq, Tk),
    )
    return LocalAttentionMask(block_mask=block_mask, num_past=num_past)


def _compiled_kernel():
    """torch.compile(flex_attention), made on first use: compiling at import would slow every
    command, and one compiled function serves every layer and shape."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention)
    return _compiled_flex


def flex_local_attention(q: Tensor, k: Tensor, v: Tensor, mask: LocalAttentionMask, *,
                         scale: float, compiled: Optional[bool] = None) -> Tensor:
    """Local attention through FlexAttention.

    Shapes as `local_attention`: q [Tq, B, Hq, d]; k, v [Tk, B, Hk, d] with Tk = num_past + Tq.
    compiled: None compiles on CUDA only; True / False forces it (the benchmark compiles on a CPU).
    Returns [Tq, B, Hq, d].
    """
    if k.shape[0] != mask.num_past + q.shape[0]:
        raise ValueError(
            f"the FlexAttention mask was built for {mask.num_past} keys before the queries but "
            f"{k.shape[0] - q.shape[0]} were given"
        )
    if q.device.type == "cpu" and torch.is_grad_enabled() and (
            q.requires_grad or k.requires_grad or v.requires_grad):
        raise ConfigError(
            "local attention 'flex' cannot train on a CPU: PyTorch has no FlexAttention backward "
            "there; use --local-attention blocked (or auto) on a CPU."
        )
    from torch.nn.attention.flex_attention import flex_attention

    # Eager flex is PyTorch's unfused reference: enough for checking and for evaluation on a
    # CPU, where blocked SDPA is the default anyway.
    if compiled is None:
        compiled = q.device.type == "cuda"
    kernel = _compiled_kernel() if compiled else flex_attention
    qh, kh, vh = (t.permute(1, 2, 0, 3) for t in (q, k, v))  # [B, H, T, d]
    with warnings.catch_warnings():
        # Eager flex warns on every call that it is unfused; on a CPU that is the intent.
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile")
        out = kernel(qh, kh, vh, block_mask=mask.block_mask, scale=scale,
                     enable_gqa=qh.shape[1] != kh.shape[1])
    return out.permute(2, 0, 1, 3)
