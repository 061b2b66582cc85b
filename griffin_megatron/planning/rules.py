"""The rules a parallel layout must satisfy, each with a name that error messages quote.

Tensor parallelism splits whole attention heads, whole RG-LRU gate blocks and equal slices of the
recurrent width, MLP width, vocabulary and fused QKV output over the TP ranks; pipeline
parallelism gives every stage (and virtual stage) the same number of layers; the GPUs are exactly
TP x PP x DP; and the global batch is a whole number of micro-batches on every data-parallel rank.
"""

from __future__ import annotations

from typing import List, NamedTuple

from ..config import GriffinConfig
from ..errors import ConfigError
from .layout import Layout


class LayoutError(ConfigError):
    """An impossible or non-fitting layout; the message names the violated rule(s)."""


class Violation(NamedTuple):
    rule: str
    message: str  # what is wrong and how to fix it, without a final period


def _divides(rule: str, what: str, value: int, by_name: str, by: int, why: str) -> List[Violation]:
    if value % by == 0:
        return []
    return [Violation(rule, f"{what}={value} is not divisible by {by_name}={by} ({why})")]


def tensor_parallel_violations(config: GriffinConfig, layout: Layout) -> List[Violation]:
    tp = layout.tensor_parallel
    name = "tensor-model-parallel-size"
    out = []
    out += _divides("heads/tp", "num_attention_heads", config.num_attention_heads, name, tp,
                    "each rank owns whole query heads")
    groups = config.num_query_groups
    if groups % tp and tp % groups:
        out.append(Violation("kv-heads/tp", f"num_query_groups={groups} and {name}={tp} do not "
                             "divide one another (key/value heads are split or replicated whole)"))
    qkv = (config.num_attention_heads + 2 * groups) * config.kv_channels
    out += _divides("qkv/tp", "fused QKV width", qkv, name, tp, "Megatron splits the fused QKV "
                    "projection evenly")
    out += _divides("lru/tp", "lru_width", config.lru_width, name, tp,
                    "the recurrent width is split across ranks")
    out += _divides("rglru-heads/tp", "rglru_num_heads", config.rglru_num_heads, name, tp,
                    "each rank owns whole RG-LRU gate blocks")
    out += _divides("ffn/tp", "ffn_hidden_size", config.ffn_hidden_size, name, tp,
                    "the MLP is split across ranks")
    out += _divides("vocab/tp", "vocab_size", config.vocab_size, name, tp,
                    "the vocabulary is split across ranks; pad it to a multiple of the TP size")
    if layout.sequence_parallel:
        if tp == 1:
            out.append(Violation("sequence-parallel", "sequence-parallel needs "
                                 "tensor-model-parallel-size > 1 (it splits over the TP group)"))
        out += _divides("seq/tp", "seq-length", layout.seq_length, name, tp,
                        "sequence parallelism gives each rank an equal slice of the sequence")
    return out


def pipeline_violations(config: GriffinConfig, layout: Layout) -> List[Violation]:
    pp, per_virtual = layout.pipeline_parallel, layout.layers_per_virtual_stage
    out = _divides("layers/pp", "num_layers", config.num_layers, "pipeline-model-parallel-size",
                   pp, "every pipeline stage holds the same number of layers")
    if per_virtual is None or out:
        return out
    if pp == 1:
        return [Violation("vpp", "num-layers-per-virtual-pipeline-stage needs "
                          "pipeline-model-parallel-size > 1 (it interleaves pipeline stages)")]
    per_stage = config.num_layers // pp
    out += _divides("vpp", "layers per pipeline stage", per_stage,
                    "num-layers-per-virtual-pipeline-stage", per_virtual,
                    "each stage is cut into equal virtual stages")
    return out


def batch_violations(layout: Layout) -> List[Violation]:
    per_step = layout.micro_batch_size * layout.data_parallel
    out = _divides("global-batch", "global-batch-size", layout.global_batch_size,
                   "micro-batch-size x data-parallel size", per_step,
                   "every data-parallel rank runs whole micro-batches")
    if not out and layout.virtual_stages > 1 and layout.num_microbatches % layout.pipeline_parallel:
        out.append(Violation("vpp-microbatches", f"{layout.num_microbatches} micro-batches per "
                             f"step is not a multiple of pipeline-model-parallel-size="
                             f"{layout.pipeline_parallel} (Megatron's interleaved schedule runs "
                             "micro-batches in groups of PP)"))
    return out


def recompute_violations(config: GriffinConfig, layout: Layout) -> List[Violation]:
    granularity, method, count = (layout.recompute_granularity, layout.recompute_method,
                                  layout.recompute_num_layers)
    per_chunk = config.num_layers // layout.pipeline_parallel // layout.virtual_stages
    if granularity == "full":
        if method is None or count is None:
            return [Violation("recompute", "recompute-granularity full needs recompute-method "
                              "(uniform or block) and recompute-num-layers")]
        if not 1 <= count <= per_chunk:
            return [Violation("recompute", f"recompute-num-layers={count} must be between 1 and "
                              f"the {per_chunk} layers of one pipeline chunk")]
    elif method is not None or count is not None:
        return [Violation("recompute", "recompute-method and recompute-num-layers apply only "
                          "with recompute-granularity full")]
    return []


def layout_violations(config: GriffinConfig, layout: Layout) -> List[Violation]:
    """Every rule the layout breaks (empty when it is possible)."""
    mp = layout.model_parallel
    if layout.gpus % mp:
        # Nothing downstream (DP, micro-batches) is defined without this one.
        return [Violation("gpus", f"{layout.gpus} GPUs is not a multiple of tensor x pipeline "
                          f"parallel size = {layout.tensor_parallel} x "
                          f"{layout.pipeline_parallel} = {mp} (GPUs = TP x PP x DP)")]
    out = tensor_parallel_violations(config, layout) + pipeline_violations(config, layout)
    if out:
        return out
    return batch_violations(layout) + recompute_violations(config, layout)


def error_for(violations: List[Violation]) -> LayoutError:
    first = violations[0]
    text = f"the layout breaks rule '{first.rule}': {first.message}"
    others = [v.rule for v in violations[1:]]
    if others:
        text += f" (also broken: {', '.join(repr(r) for r in others)})"
    return LayoutError(text + ".")


def check_layout(config: GriffinConfig, layout: Layout) -> None:
    violations = layout_violations(config, layout)
    if violations:
        raise error_for(violations)
