"""Context parallelism in the plan: what each rank exchanges, and the sequences that fit.

Per layer and micro-batch, each context-parallel rank exchanges a fixed amount (see
griffin_megatron/context_parallel), whatever the sequence length s:

    recurrent layer   forward:  the Conv1D halo, (K - 1) b W_t activations, and the all-gather
                                of (total decay, end state), (CP - 1) x 2 b W_t fp32 received
                      backward: the halo's gradient, (K - 1) b W_t, and an all-reduce of
                                CP x 2 b W_t fp32 (ring: 2 (CP - 1) / CP of it sent)
    attention layer   forward:  the key/value halo, 2 (W - 1) b G_t d activations
                      backward: its gradient, the same size

Megatron's ring attention for a global causal MQA Transformer passes every rank's keys and
values around the ring instead: (CP - 1) x 2 (s / CP) b G d in the forward pass and twice that
(keys, values and their gradients) in the backward pass, growing with s.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Dict, List, Optional

from .layout import Layout
from .memory import busiest, plan_memory, usable_bytes

FP32 = 4


def exchange_bytes(config, layout: Layout) -> Dict[str, float]:
    """Bytes one rank receives per layer per micro-batch (forward + backward), by layer type."""
    cp = layout.context_parallel
    if cp == 1:
        return {"recurrent": 0.0, "attention": 0.0}
    a = 2 if layout.bf16 else 4
    b, tp = layout.micro_batch_size, layout.tensor_parallel
    width = config.lru_width / tp
    kv_heads = max(config.num_query_groups / tp, 1)
    conv_halo = (config.conv_width - 1) * b * width * a
    state_pairs = 2 * b * width * FP32
    # all-gather: the other ranks' pairs; all-reduce of all CP pairs (ring): 2 (CP - 1) pairs
    recurrent = 2 * conv_halo + (cp - 1) * state_pairs + 2 * (cp - 1) * state_pairs
    attention = 2 * (2 * (config.attention_window - 1) * b * kv_heads * config.kv_channels * a)
    return {"recurrent": recurrent, "attention": attention}


def ring_attention_bytes(seq_length: int, micro_batch: int, kv_heads: int, head_dim: int,
                         cp: int, activation_bytes: int = 2) -> float:
    """Bytes one rank receives per layer per micro-batch under Megatron's ring attention (P2P
    `cp_comm_type='p2p'`): keys and values of every other rank's chunk in the forward pass,
    keys, values and their gradients in the backward pass."""
    chunk = 2 * (seq_length / cp) * micro_batch * kv_heads * head_dim * activation_bytes
    return (cp - 1) * chunk * 3


def layout_violations(config, layout: Layout) -> list:
    """The rules `layout` breaks for this model: the config's own rules, applied to the config
    rebuilt at the layout's CP size and sequence length, then the job's batch rules."""
    from ..config import GriffinConfigError, Violation, batch_violations
    from ..context_parallel.layout import check_context_parallel_layout

    try:
        candidate = replace(config, context_parallel_size=layout.context_parallel,
                            seq_length=layout.seq_length)
        check_context_parallel_layout(candidate, layout.backend, error=GriffinConfigError)
    except GriffinConfigError as error:
        return list(error.violations) or [Violation("context-parallel", str(error))]
    return batch_violations(candidate, layout.gpus, layout.micro_batch_size,
                            layout.global_batch_size)


def fits(config, layout: Layout, counts, gpu_memory_gb: float, reserve: float) -> bool:
    if layout_violations(config, layout):
        return False
    return busiest(plan_memory(config, layout, counts)).total <= usable_bytes(gpu_memory_gb, reserve)


def _granularity(layout: Layout) -> int:
    unit = layout.context_parallel * (layout.tensor_parallel if layout.sequence_parallel else 1)
    return math.lcm(64, unit)


def with_cp(layout: Layout, cp: int) -> Layout:
    """The layout at another CP size; the global batch drops to one micro-batch per
    data-parallel rank when the recipe's no longer divides."""
    candidate = replace(layout, context_parallel=cp)
    if candidate.global_batch_size % (candidate.micro_batch_size * candidate.data_parallel):
        candidate = replace(candidate, global_batch_size=candidate.micro_batch_size
                            * candidate.data_parallel)
    return candidate


def longest_sequence(config, layout: Layout, counts, gpu_memory_gb: float, reserve: float) -> int:
    """The longest sequence (a multiple of 64 and of the shard split) this layout trains within
    memory; 0 when not even the shortest fits. Activation memory grows with s, so bisect."""
    step = _granularity(layout)
    low, high = 0, step
    while fits(config, replace(layout, seq_length=high), counts, gpu_memory_gb, reserve):
        low, high = high, high * 2
        if high > 2**26:
            return low
    while high - low > step:
        middle = (low + high) // 2 // step * step
        if fits(config, replace(layout, seq_length=middle), counts, gpu_memory_gb, reserve):
            low = middle
        else:
            high = middle
    return low


def cp_sizes(layout: Layout) -> List[int]:
    """Context-parallel sizes the cluster can hold next to the layout's TP x PP (powers of 2)."""
    room = layout.gpus // layout.model_parallel
    sizes, cp = [], 1
    while cp <= room:
        if room % cp == 0:
            sizes.append(cp)
        cp *= 2
    return sizes


def smallest_fitting_cp(config, layout: Layout, counts, gpu_memory_gb: float,
                        reserve: float) -> Optional[int]:
    for cp in cp_sizes(layout):
        if fits(config, with_cp(layout, cp), counts, gpu_memory_gb, reserve):
            return cp
    return None


# What else a long sequence may need besides CP, tried in this order when CP alone is not enough.
FALLBACKS = (
    ({}, ""),
    ({"micro_batch_size": 1}, "micro-batch-size=1"),
    ({"micro_batch_size": 1, "recompute_granularity": "full", "recompute_method": "uniform",
      "recompute_num_layers": 1},
     "micro-batch-size=1 recompute-granularity=full recompute-method=uniform recompute-num-layers=1"),
)


def needed_cp(config, layout: Layout, counts, gpu_memory_gb: float, reserve: float):
    """(CP size, the other recipe changes it needs as 'key=value' words) for the smallest change
    that makes the layout fit, or None."""
    for changes, words in FALLBACKS:
        candidate = replace(layout, **changes)
        cp = smallest_fitting_cp(config, candidate, counts, gpu_memory_gb, reserve)
        if cp is not None:
            return cp, words
    return None


def report(plan) -> List[str]:
    """The plan's context-parallel section."""
    config, layout = plan.config, plan.layout
    args = (plan.counts, plan.gpu_memory_gb, plan.reserve)
    lines = [f"context parallelism (CP {layout.context_parallel}: {layout.shard_length:,} tokens "
             "of each sequence per rank)"]
    if layout.context_parallel > 1:
        traffic = exchange_bytes(config, layout)
        lines.append(
            f"  exchanged per layer per micro-batch  recurrent {traffic['recurrent'] / 2**10:,.1f} KiB,"
            f" attention {traffic['attention'] / 2**10:,.1f} KiB per rank (forward + backward; "
            "the same at any sequence length)"
        )
    longest = []
    for cp in cp_sizes(layout):
        longest.append(f"CP {cp}: {longest_sequence(config, with_cp(layout, cp), *args):,}")
    lines.append("  longest sequence that fits          " + ", ".join(longest))
    if plan.memory_problem:
        needed = needed_cp(config, layout, *args)
        if needed is None:
            lines.append(f"  seq-length {layout.seq_length:,} does not fit at any CP on "
                         f"{layout.gpus} GPUs with TP x PP = {layout.model_parallel}, even with "
                         "micro-batch 1 and full recompute")
        else:
            cp, words = needed
            sets = " ".join(f"--set {w}" for w in [f"context-parallel-size={cp}", *words.split()])
            lines.append(f"  seq-length {layout.seq_length:,} needs context-parallel-size {cp}"
                         + (f" with {words}" if words else "") + f": {sets}")
    return lines
