"""Document boundaries and positions for one forward pass.

Hawk and Griffin must not let information cross a document start, in three places: the Conv1D
taps, the RG-LRU state and the attention window. Callers mark documents the way they already do:

- HuggingFace style: `position_ids` [B, T] that restart at 0 where a document starts;
- Megatron style: `PackedSeqParams(qkv_format="thd", cu_seqlens_q=...)` with B = 1.

`build_sequence_params` turns either into one `GriffinSequenceParams`, which travels to every
layer through Megatron's own `packed_seq_params` argument (TransformerBlock forwards it to each
layer's `self_attention`, also under activation recompute). It always reports qkv_format
"sbhd" to Megatron, so Megatron applies our per-token rotary frequencies itself; the caller's
packed boundaries stay available in `cu_seqlens_*`. It carries document layout only: the
generation cache travels separately (griffin_megatron/generation/).

`with_document_streams` adds what the Transformer Engine attention needs (the batch viewed as
one packed stream of documents), and `with_flex_mask` the FlexAttention `BlockMask` of the local
backend; each is computed once per forward rather than in every layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from megatron.core.packed_seq_params import PackedSeqParams
from torch import Tensor

from .errors import ConfigError


@dataclass
class GriffinSequenceParams(PackedSeqParams):
    """Per-forward document layout (all tensors sequence-first, [T, B]).

    reset: True where a document starts (RG-LRU state cleared, multiplier 1).
    tokens_since_start: how many tokens of the same document precede each token, counting
        tokens of earlier chunks (generation); a Conv1D tap or attention key s steps back is
        visible iff s <= tokens_since_start.
    positions: rotary positions (HF `position_ids` when given, else restarting per document).
    packed_format: the caller's qkv_format ("thd" when Megatron packed sequences came in).
    context_parallel: this rank's `context_parallel.ContextParallelShard` when the tensors are
        one contiguous shard of longer sequences (None: the whole sequence is here).
    stream_cu_seqlens / stream_max_seqlen: the [T, B] batch viewed batch-major as one packed
        stream, cut at every row start and document start (int32 [N + 1]) and its longest
        document; None when no document starts after t = 0 (set by `with_document_streams`).
    flex_mask: the local backend's FlexAttention mask for this forward
        (modules/flex_attention.py `LocalAttentionMask`, set by `with_flex_mask`); None: the
        attention layers run the blocked SDPA path.
    """

    reset: Optional[Tensor] = None
    tokens_since_start: Optional[Tensor] = None
    positions: Optional[Tensor] = None
    packed_format: Optional[str] = None
    context_parallel: Optional[object] = None
    stream_cu_seqlens: Optional[Tensor] = None
    stream_max_seqlen: Optional[int] = None
    flex_mask: Optional[object] = None


def _resets_from_cu_seqlens(cu_seqlens: Tensor, total: int, device) -> Tensor:
    reset = torch.zeros(total, dtype=torch.bool, device=device)
    starts = cu_seqlens[:-1].to(device=device, dtype=torch.long)
    reset[starts[starts < total]] = True
    return reset


def build_sequence_params(
    seq_len: int,
    batch: int,
    device: torch.device,
    position_ids: Optional[Tensor] = None,
    packed_seq_params: Optional[PackedSeqParams] = None,
    carried_tokens_since_start: Optional[Tensor] = None,
) -> GriffinSequenceParams:
    """Derive resets, tokens-since-start and rotary positions for a [T, B] chunk.

    carried_tokens_since_start: [B], the tokens_since_start of the last token before this chunk
    when it continues earlier chunks (generation), else None (the chunk starts a sequence).
    """
    T, B = seq_len, batch
    if isinstance(packed_seq_params, GriffinSequenceParams):
        return packed_seq_params
    continuing = carried_tokens_since_start is not None
    time_index = torch.arange(T, device=device).unsqueeze(1).expand(T, B)

    packed_format = None
    cu_fields = {}
    if packed_seq_params is not None and packed_seq_params.qkv_format == "thd":
        if B != 1:
            raise ConfigError(
                f"packed sequences (qkv_format='thd') need batch size 1, got {B}; concatenate "
                "the documents of a micro-batch into one row and describe them with cu_seqlens."
            )
        boundaries = packed_seq_params.cu_seqlens_q_padded
        if boundaries is None:
            boundaries = packed_seq_params.cu_seqlens_q
        reset = _resets_from_cu_seqlens(boundaries, T, device).unsqueeze(1)
        packed_format = "thd"
        cu_fields = {
            name: getattr(packed_seq_params, name)
            for name in (
                "cu_seqlens_q",
                "cu_seqlens_kv",
                "cu_seqlens_q_padded",
                "cu_seqlens_kv_padded",
                "max_seqlen_q",
                "max_seqlen_kv",
            )
        }
    elif position_ids is not None:
        if position_ids.shape != (B, T):
            raise ConfigError(
                f"position_ids must be [batch, seq] = [{B}, {T}], got {tuple(position_ids.shape)}."
            )
        reset = (position_ids == 0).transpose(0, 1)
    else:
        reset = torch.zeros(T, B, dtype=torch.bool, device=device)
        if not continuing:
            reset[0] = True  # a fresh sequence starts a document

    # Tokens since the document start: distance to the last reset at or before t; with no reset
    # yet, continue the count carried from earlier chunks (or count from the chunk's first token).
    if continuing:
        carried = carried_tokens_since_start.to(device).unsqueeze(0) + 1  # [1, B]
    else:
        carried = torch.zeros(1, B, dtype=torch.long, device=device)
    start_marker = torch.where(reset, time_index, torch.full_like(time_index, -1))
    last_start = torch.cummax(start_marker, dim=0).values  # [T, B], -1 before the first reset
    tokens_since_start = torch.where(last_start >= 0, time_index - last_start, time_index + carried)

    if position_ids is not None and packed_format is None:
        positions = position_ids.transpose(0, 1)
    else:
        positions = tokens_since_start

    return GriffinSequenceParams(
        qkv_format="sbhd",
        reset=reset,
        tokens_since_start=tokens_since_start,
        positions=positions,
        packed_format=packed_format,
        **cu_fields,
    )


def next_token_params(position_ids: Tensor, carried_tokens_since_start: Tensor) -> GriffinSequenceParams:
    """One token per row after earlier chunks (a generation step): what build_sequence_params
    gives for position_ids [B, 1], in three ops (a generation step runs this once per token)."""
    positions = position_ids.transpose(0, 1)  # [1, B]
    reset = positions == 0
    carried = carried_tokens_since_start.to(positions.device).unsqueeze(0) + 1
    return GriffinSequenceParams(
        qkv_format="sbhd",
        reset=reset,
        tokens_since_start=torch.where(reset, 0, carried),
        positions=positions,
    )


def document_stream_boundaries(reset: Tensor) -> Tensor:
    """cu_seqlens (int32) over the batch-major token stream of a [T, B] reset mask: a boundary
    at every row start and every document start."""
    T, B = reset.shape
    starts = reset.t().clone()
    starts[:, 0] = True
    flat = starts.reshape(-1).nonzero().squeeze(1)
    end = torch.tensor([T * B], device=reset.device, dtype=flat.dtype)
    return torch.cat([flat, end]).to(torch.int32)


def with_document_streams(seq: GriffinSequenceParams) -> GriffinSequenceParams:
    """seq with stream_cu_seqlens / stream_max_seqlen filled in (for the te backend's packed
    attention): one host synchronisation per forward, here, instead of two in every layer."""
    if seq.stream_cu_seqlens is not None or not bool(seq.reset[1:].any()):
        return seq
    cu = document_stream_boundaries(seq.reset)
    return dataclasses.replace(
        seq, stream_cu_seqlens=cu, stream_max_seqlen=int((cu[1:] - cu[:-1]).max())
    )


def with_flex_mask(seq: GriffinSequenceParams, window: int,
                   num_past: int = 0) -> GriffinSequenceParams:
    """seq with the FlexAttention mask of its queries filled in: causal, within `window` keys and
    within each query's document (from tokens_since_start, which position-id restarts and
    cu_seqlens both set), over num_past keys before the queries (a context-parallel halo, a
    generation cache) and the queries' own."""
    from .modules.flex_attention import local_attention_mask

    return dataclasses.replace(
        seq, flex_mask=local_attention_mask(seq.tokens_since_start, window, num_past))


def rotary_frequencies(positions: Tensor, rotary_dim: int, base: float) -> Tensor:
    """Megatron-layout RoPE angles for per-token positions: [T, B] -> [T, B, 1, rotary_dim].

    Same as HF/Megatron non-interleaved RoPE: angles for channel pairs (i, i + rotary_dim / 2).
    """
    inv_freq = 1.0 / (
        base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32, device=positions.device) / rotary_dim)
    )
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # [T, B, rotary_dim / 2]
    return torch.cat([angles, angles], dim=-1).unsqueeze(2)
