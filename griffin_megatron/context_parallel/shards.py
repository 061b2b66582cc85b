"""Which tokens a context-parallel rank holds, and their document layout.

Rank r of a context-parallel group of size C holds tokens [r * T / C, (r + 1) * T / C) of every
sequence: contiguous shards are balanced for Griffin, since every token costs the same (Megatron's
zigzag split exists only because global causal attention is not balanced).

Resets, tokens-since-document-start and rotary positions are computed once on the whole
sequence (`build_sequence_params`, position-id restarts or THD `cu_seqlens`) and then cut, so a
shard whose first token is inside a document knows how far back that document reaches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from megatron.core import parallel_state
from megatron.core.packed_seq_params import PackedSeqParams
from torch import Tensor

from ..sequence import GriffinSequenceParams, build_sequence_params

# Per-token [B, T] fields of a Megatron GPT micro-batch, cut along the sequence.
SEQUENCE_KEYS = ("tokens", "labels", "loss_mask", "position_ids")
_PACKED_FIELDS = ("cu_seqlens_q", "cu_seqlens_kv", "cu_seqlens_q_padded", "cu_seqlens_kv_padded",
                  "max_seqlen_q", "max_seqlen_kv")


@dataclass(frozen=True)
class ContextParallelShard:
    """This rank's place in its context-parallel group.

    group: Megatron's context-parallel process group; global_ranks: its members in CP-rank order
    (point-to-point peers); rank, size: this rank's index and the group size.
    """

    group: object
    global_ranks: Tuple[int, ...]
    rank: int
    size: int

    def bounds(self, seq_length: int) -> Tuple[int, int]:
        """[start, end) of this rank's shard of a sequence of seq_length tokens."""
        if seq_length % self.size:
            raise ValueError(
                f"a sequence of {seq_length} tokens does not split into {self.size} equal "
                "context-parallel shards; use a sequence length divisible by the CP size."
            )
        length = seq_length // self.size
        return self.rank * length, (self.rank + 1) * length


def current_shard() -> Optional[ContextParallelShard]:
    """This rank's shard description from Megatron's parallel state; None without CP."""
    if not parallel_state.model_parallel_is_initialized():
        return None
    size = parallel_state.get_context_parallel_world_size()
    if size == 1:
        return None
    return ContextParallelShard(
        group=parallel_state.get_context_parallel_group(),
        global_ranks=tuple(parallel_state.get_context_parallel_global_ranks()),
        rank=parallel_state.get_context_parallel_rank(),
        size=size,
    )


def shard_sequence_params(seq: GriffinSequenceParams, shard: ContextParallelShard) -> GriffinSequenceParams:
    """The whole sequence's document layout [T, B] cut to this rank's shard [T / C, B].

    The packed boundaries (`cu_seqlens_*`) describe the whole sequence, not the shard, so they
    are dropped: every Griffin layer reads the per-token fields instead.
    """
    start, end = shard.bounds(seq.reset.shape[0])
    return dataclasses.replace(
        seq,
        reset=seq.reset[start:end],
        tokens_since_start=seq.tokens_since_start[start:end],
        positions=seq.positions[start:end],
        context_parallel=shard,
        **{name: None for name in _PACKED_FIELDS},
    )


def shard_batch(
    batch: Dict[str, Tensor],
    shard: ContextParallelShard,
    packed_seq_params: Optional[PackedSeqParams] = None,
) -> Tuple[Dict[str, Tensor], GriffinSequenceParams]:
    """A micro-batch of [B, T] tensors -> this rank's [B, T / C] shard of each, and the shard's
    sequence params (pass them to the model as `packed_seq_params`).

    Documents come from `position_ids` restarting at 0, or from `packed_seq_params` (THD
    `cu_seqlens` over the whole sequence, batch 1).
    """
    tokens = batch["tokens"]
    batch_size, seq_length = tokens.shape
    start, end = shard.bounds(seq_length)
    position_ids = batch.get("position_ids")
    seq = build_sequence_params(
        seq_length, batch_size, tokens.device, position_ids=position_ids,
        packed_seq_params=packed_seq_params,
    )
    local = dict(batch)
    for key in SEQUENCE_KEYS:
        if batch.get(key) is not None:
            local[key] = batch[key][:, start:end].contiguous()
    return local, shard_sequence_params(seq, shard)


def is_sharded(seq: Optional[PackedSeqParams]) -> bool:
    """Whether these sequence params describe a context-parallel shard."""
    return isinstance(seq, GriffinSequenceParams) and seq.context_parallel is not None

