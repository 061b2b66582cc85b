"""Context parallelism for Hawk and Griffin: each rank holds a contiguous shard of every sequence.

Per layer the ranks exchange a fixed amount, whatever the sequence length:

    RG-LRU            one [B, W] (total decay, end state) pair per rank       rglru_scan.py
    Conv1D            the K - 1 inputs before the shard (a halo)              halo.py
    local attention   the W - 1 keys and values before the shard (one KV head under MQA)

Document boundaries and positions are computed on the whole sequence and then cut per shard
(shards.py), so resets at or across shard boundaries stay exact. Layouts that cannot work are
refused at start (layout.py). Process groups, the DP x CP gradient reduction and the loss
averaging are Megatron-Core's own (`initialize_model_parallel(context_parallel_size=...)`).
"""

from .layout import check_context_parallel_layout
from .process_groups import ensure_initialized
from .shards import ContextParallelShard, current_shard, shard_batch, shard_sequence_params

__all__ = [
    "ContextParallelShard",
    "check_context_parallel_layout",
    "current_shard",
    "ensure_initialized",
    "shard_batch",
    "shard_sequence_params",
]
