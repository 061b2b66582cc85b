"""Per-GPU memory of a training layout: weights, gradients, optimizer state and activations.

Model state, per parameter a rank holds (Megatron-Core's mixed precision with DDP):
    bf16 training:  weights 2 B (bf16) + main gradients 4 B (fp32 grad buffer)
                    + optimizer 12 B (fp32 master weights, Adam first and second moments),
                    the 12 B divided by the data-parallel size with the distributed optimizer;
    fp32 training:  weights 4 B + gradients 4 B + Adam moments 8 B (/ DP when distributed).
That is Megatron-LM's 18 B/parameter, or 6 + 12 / DP with the distributed optimizer.

Activations: `activations.py` gives the bytes each layer keeps per micro-batch. A pipeline stage
holds several micro-batches at once; how many, and of which virtual stages, follows from
Megatron-Core's schedule, which `peak_in_flight` replays step by step: warm-up forwards
(PP - rank - 1 for 1F1B; 2 (PP - rank - 1) + (chunks - 1) PP for the interleaved schedule, in the
order of `get_schedule_table`), then one forward / one backward, then the remaining backwards.
Full recompute keeps only each recomputed group's input and rebuilds one group at a time during
backward; selective recompute re-runs core attention, keeping its q, k, v inputs instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence

from megatron.core.pipeline_parallel.schedules import get_schedule_table

from ..config import ATTENTION, GriffinConfig
from ..layer_specs import stage_layer_ids
from . import activations as act
from .layout import Layout
from .params import ParameterCounts

GiB = 2**30
CORE_ATTENTION_TERMS = (
    "attention query blocks",
    "attention key and value blocks",
    "window / document mask as bias",
    "attention output blocks",
    "attention log-sum-exp",
)


def bytes_per_parameter(bf16: bool, distributed_optimizer: bool, data_parallel: int) -> dict:
    weights, grads, optimizer = (2, 4, 12) if bf16 else (4, 4, 8)
    if distributed_optimizer:
        optimizer = optimizer / data_parallel
    return {"weights": weights, "gradients": grads, "optimizer": optimizer}


def micro_batch_of(layout: Layout, rglru_backend: str = "triton") -> act.MicroBatch:
    return act.MicroBatch(
        seq_length=layout.shard_length,  # a context-parallel rank keeps its shard's activations
        micro_batch_size=layout.micro_batch_size,
        tensor_parallel=layout.tensor_parallel,
        sequence_parallel=layout.sequence_parallel,
        activation_bytes=2 if layout.bf16 else 4,
        backend=layout.backend,
        rglru_backend=rglru_backend,
        context_parallel=layout.context_parallel,
    )


def _layer_bytes(config: GriffinConfig, layer: int, mb: act.MicroBatch, selective: bool) -> float:
    kind = config.layer_type(layer)
    terms = act.layer_terms(config, kind, mb)
    if selective and kind == ATTENTION:
        # The checkpointed core attention keeps only its inputs: q, k and v (a view of QKV).
        kept = [t for t in terms if t[0] not in CORE_ATTENTION_TERMS]
        names = {name for name, _ in kept}
        inputs = act.attention_block_terms(config, replace(mb, backend="te"))
        kept += [t for t in inputs if t[0].startswith(("attention q and k", "fused QKV"))
                 and t[0] not in names]
        terms = kept
    return sum(value for _, value in terms)


@dataclass(frozen=True)
class ChunkActivations:
    """One model chunk (a pipeline stage, or one virtual stage of it) for one micro-batch."""

    layers: Sequence[int]
    kept: float  # bytes held from its forward until its backward
    transient: float  # extra bytes briefly alive during its forward or backward


def chunk_activations(config: GriffinConfig, layout: Layout, layers: Sequence[int], first: bool,
                      last: bool, mb: act.MicroBatch) -> ChunkActivations:
    selective = layout.recompute_granularity == "selective"
    per_layer = [_layer_bytes(config, i, mb, selective) for i in layers]
    transient = 0.0
    if layout.recompute_granularity == "full":
        n = layout.recompute_num_layers
        if layout.recompute_method == "uniform":
            groups = [per_layer[i:i + n] for i in range(0, len(per_layer), n)]
            kept = len(groups) * act.layer_input_bytes(config, mb)
            transient = max(sum(g) for g in groups)
        else:  # block: the first n layers of the chunk are recomputed one by one
            kept = n * act.layer_input_bytes(config, mb) + sum(per_layer[n:])
            transient = max(per_layer[:n])
    else:
        kept = sum(per_layer)
    kept += sum(v for _, v in act.shared_terms(config, [config.layer_type(i) for i in layers], mb))
    if first:
        kept += sum(v for _, v in act.embedding_terms(config, mb))
    if last:
        kept += sum(v for _, v in act.output_terms(config, mb))
        transient = max(transient, act.loss_transient_bytes(config, mb))
    return ChunkActivations(layers, kept, transient)


def peak_in_flight(chunk_bytes: Sequence[float], pipeline: int, rank: int, microbatches: int):
    """Replay Megatron-Core's 1F1B (or interleaved 1F1B) schedule on one pipeline rank.

    Returns (peak bytes of forward activations alive at once, most micro-batch chunks alive).
    """
    chunks = len(chunk_bytes)
    total = microbatches * chunks
    if chunks == 1:
        order = [(m, 0) for m in range(microbatches)]
        warmup = pipeline - rank - 1
    else:
        order = get_schedule_table(microbatches, chunks, pipeline)
        warmup = (pipeline - rank - 1) * 2 + (chunks - 1) * pipeline
    warmup = min(warmup, total)
    alive, peak, most = {}, 0.0, 0

    def forward(k):
        nonlocal peak, most
        micro, chunk = order[k]
        alive[(micro, chunk)] = chunk_bytes[chunk]
        peak, most = max(peak, sum(alive.values())), max(most, len(alive))

    def backward(k):
        micro, chunk = order[k]
        del alive[(micro, chunks - 1 - chunk)]

    for k in range(warmup):
        forward(k)
    for i in range(total - warmup):
        forward(warmup + i)
        backward(i)
    for i in range(total - warmup, total):
        backward(i)
    return peak, most


@dataclass(frozen=True)
class StageMemory:
    """Memory of one GPU of one pipeline stage (every TP/DP rank of a stage is alike)."""

    stage: int
    layers: List[int]
    parameters: int
    weights: float
    gradients: float
    optimizer: float
    optimizer_other: float  # with the distributed optimizer switched the other way
    activations: float
    in_flight: int  # most micro-batch chunks alive at once

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def _stage_activations(config, layout, rank, mb, chunks_layers) -> tuple:
    v, pp = layout.virtual_stages, layout.pipeline_parallel
    chunks = [
        chunk_activations(config, layout, layers, rank == 0 and c == 0,
                          rank == pp - 1 and c == v - 1, mb)
        for c, layers in enumerate(chunks_layers)
    ]
    peak, most = peak_in_flight([c.kept for c in chunks], pp, rank, layout.num_microbatches)
    return peak + max(c.transient for c in chunks), most


def plan_memory(config: GriffinConfig, layout: Layout, counts: ParameterCounts,
                rglru_backend: str = "triton") -> List[StageMemory]:
    """Memory of every pipeline stage. `config` is the run's config (its pipeline stages, checked
    by the config's own layout rules), `layout` the plan made of it (`Layout.of`)."""
    pp, v, tp = layout.pipeline_parallel, layout.virtual_stages, layout.tensor_parallel
    mb = micro_batch_of(layout, rglru_backend)
    # Megatron's distributed optimizer shards over the data-parallel-with-CP group.
    shards = layout.data_parallel * layout.context_parallel
    per_param = bytes_per_parameter(layout.bf16, layout.distributed_optimizer, shards)
    other = bytes_per_parameter(layout.bf16, not layout.distributed_optimizer, shards)
    stages = []
    for rank in range(pp):
        chunks_layers = [
            list(stage_layer_ids(config, vp_stage=c if v > 1 else None, pp_rank=rank))
            for c in range(v)
        ]
        layers = sorted(i for chunk in chunks_layers for i in chunk)
        params = counts.stage_per_rank(layers, tp, rank == 0, rank == pp - 1, pp)
        activations, most = _stage_activations(config, layout, rank, mb, chunks_layers)
        stages.append(StageMemory(
            stage=rank,
            layers=layers,
            parameters=params,
            weights=params * per_param["weights"],
            gradients=params * per_param["gradients"],
            optimizer=params * per_param["optimizer"],
            optimizer_other=params * other["optimizer"],
            activations=activations,
            in_flight=most,
        ))
    return stages


def busiest(stages: List[StageMemory]) -> StageMemory:
    return max(stages, key=lambda s: s.total)


def usable_bytes(gpu_memory_gb: float, reserve_fraction: float) -> float:
    return gpu_memory_gb * GiB * (1 - reserve_fraction)


def memory_violation(stages: List[StageMemory], gpu_memory_gb: float,
                     reserve_fraction: float) -> Optional[str]:
    top = busiest(stages)
    usable = usable_bytes(gpu_memory_gb, reserve_fraction)
    if top.total <= usable:
        return None
    return (f"pipeline stage {top.stage} needs {top.total / GiB:.1f} GiB per GPU but "
            f"{gpu_memory_gb:g} GiB less a {reserve_fraction:.0%} reserve leaves "
            f"{usable / GiB:.1f} GiB; use more tensor or pipeline parallelism, the distributed "
            "optimizer, activation recompute or a smaller micro-batch")
