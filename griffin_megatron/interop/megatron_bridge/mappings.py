"""Bridge parameter mappings for Hawk / Griffin, derived from interop/hf_mapping.py's one table.

Every row of that table (our name, HF names, transform) becomes one Bridge mapping with the layer
index replaced by Bridge's `*`; the transform picks the mapping class, which also knows how the
tensor is split over tensor-parallel ranks:

| transform (hf_mapping.py) | Bridge mapping |
|---|---|
| SAME | AutoMapping: column / row / replicated by the module's class (registered below) |
| STACKED_HALVES ([x; y], [gate; up]) | GatedMLPMapping: each rank holds [first_i; second_i] |
| QKV_GROUPS | QKVMapping: Megatron's per-group interleave, then column-split |
| CONV_WEIGHT ([C, 1, K] <-> [C, K]) | ConvWeightMapping: the reshape, then column-split |

The te backend fuses each pre-norm into the linear after it; those weights are mapped under
their fused names as well (FUSED_NORM_CHECKPOINT_KEYS, the names te checkpoints translate).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from megatron.bridge.models.conversion.mapping_registry import MegatronMappingRegistry
from megatron.bridge.models.conversion.param_mapping import (
    AutoMapping,
    ColumnParallelMapping,
    GatedMLPMapping,
    MegatronParamMapping,
    QKVMapping,
)

from ...config import LAYER_TYPES
from ...layer_specs import FUSED_NORM_CHECKPOINT_KEYS
from ..hf_mapping import (
    CONV_WEIGHT,
    EMBEDDING_ROW,
    FINAL_NORM_ROW,
    MLP_ROWS,
    NORM_ROWS,
    OUTPUT_ROW,
    QKV_GROUPS,
    SAME,
    STACKED_HALVES,
    TEMPORAL_ROWS,
    Row,
    Transform,
)

# Our module classes -> how Bridge splits their parameters over tensor-parallel ranks. The
# RG-LRU and the Conv1D are per channel (per head for the gates): split on dim 0 like a
# column-parallel linear's output.
MODULE_PARALLELISM = {
    "ColumnParallelLinearWithStep": "column",
    "BiasFreeColumnParallelLinear": "column",
    "RowParallelLinearWithStep": "row",
    "TERowParallelLinearWithStep": "row",
    "RGLRU": "column",
    "CausalConv1d": "column",
    "GriffinRMSNorm": "replicated",
}


def register_module_types() -> None:
    """Tell Bridge's AutoMapping how our modules are split (a set insert: idempotent)."""
    for name, parallelism in MODULE_PARALLELISM.items():
        AutoMapping.register_module_type(name, parallelism)


class ConvWeightMapping(ColumnParallelMapping):
    """The depthwise Conv1D weight: HF's nn.Conv1d [C, 1, K] is our [C, K], split on C."""

    def hf_to_megatron(self, hf_weights: Optional[torch.Tensor], megatron_module) -> torch.Tensor:
        # Bridge hands the HF tensor to tensor-parallel rank 0 only; the others receive shards.
        ours = None if hf_weights is None else CONV_WEIGHT.to_ours([hf_weights], None)
        return super().hf_to_megatron(ours, megatron_module)

    def megatron_to_hf(self, megatron_weights, megatron_module) -> Dict[str, torch.Tensor]:
        return {
            name: CONV_WEIGHT.to_hf(full, None)[0]
            for name, full in super().megatron_to_hf(megatron_weights, megatron_module).items()
        }


def _same(ours: str, hf: Tuple[str, ...]) -> MegatronParamMapping:
    return AutoMapping(megatron_param=ours, hf_param=hf[0])


def _stacked_halves(ours: str, hf: Tuple[str, ...]) -> MegatronParamMapping:
    first, second = hf
    return GatedMLPMapping(megatron_param=ours, gate=first, up=second)


def _qkv(ours: str, hf: Tuple[str, ...]) -> MegatronParamMapping:
    q, k, v = hf
    return QKVMapping(megatron_param=ours, q=q, k=k, v=v)


def _conv_weight(ours: str, hf: Tuple[str, ...]) -> MegatronParamMapping:
    return ConvWeightMapping(megatron_param=ours, hf_param=hf[0])


MAPPING_FOR_TRANSFORM: Dict[Transform, Callable[[str, Tuple[str, ...]], MegatronParamMapping]] = {
    SAME: _same,
    STACKED_HALVES: _stacked_halves,
    QKV_GROUPS: _qkv,
    CONV_WEIGHT: _conv_weight,
}


def _fused_norm_names(local_name: str) -> List[str]:
    """The te backend's names of a local-backend norm weight (`input_layernorm.weight` ->
    `self_attention.linear_in.layer_norm_weight` and `...linear_qkv.layer_norm_weight`)."""
    names = []
    for fused, local in FUSED_NORM_CHECKPOINT_KEYS.items():
        if local_name.startswith(local):
            names.append(fused + local_name[len(local):])
    return names


def bridge_rows() -> Iterator[Row]:
    """Every row of hf_mapping's table as Bridge patterns (layer index `*`), each layer type's
    temporal rows once; norm rows also under the te backend's fused names."""
    yield EMBEDDING_ROW
    for ours, hf, transform in NORM_ROWS:
        for name in (ours, *_fused_norm_names(ours)):
            yield f"decoder.layers.*.{name}", tuple(f"model.layers.*.{n}" for n in hf), transform
    for layer_type in LAYER_TYPES:
        for ours, hf, transform in TEMPORAL_ROWS[layer_type]:
            yield (
                f"decoder.layers.*.self_attention.{ours}",
                tuple(f"model.layers.*.temporal_block.{n}" for n in hf),
                transform,
            )
    for ours, hf, transform in MLP_ROWS:
        yield f"decoder.layers.*.{ours}", tuple(f"model.layers.*.{n}" for n in hf), transform
    yield FINAL_NORM_ROW
    # An untied output layer (tie_word_embeddings false); for a tied model Bridge leaves
    # output_layer out of its tasks (model_bridge.py: embeddings_are_tied).
    yield OUTPUT_ROW


def griffin_mapping_registry() -> MegatronMappingRegistry:
    """The Bridge mapping of every Hawk / Griffin tensor, for either backend."""
    mappings = []
    for ours, hf, transform in bridge_rows():
        if transform not in MAPPING_FOR_TRANSFORM:
            raise LookupError(
                f"hf_mapping's transform {transform.name!r} (for {ours}) has no Bridge mapping; "
                "add one to MAPPING_FOR_TRANSFORM in interop/megatron_bridge/mappings.py."
            )
        mappings.append(MAPPING_FOR_TRANSFORM[transform](ours, hf))
    return MegatronMappingRegistry(*mappings)
