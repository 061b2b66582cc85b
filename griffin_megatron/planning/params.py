"""Parameters per layer and per tensor-parallel rank, read off the meta-device model.

Every parameter carries Megatron's `tensor_model_parallel` attribute when TP splits it (the
parallel linears, the vocab-parallel embedding, the per-channel Conv1D and RG-LRU tensors); one
rank then holds numel / tp of it. Everything else (norm weights, row-parallel biases) is
replicated on every rank. Counting the TP = 1 model this way gives each rank's share exactly,
because Megatron splits every partitioned tensor evenly (the layout rules check divisibility).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List

from ..config import GriffinConfig
from ..presets import meta_model

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.")
EMBEDDING = "embedding.word_embeddings.weight"
FINAL_NORM_PREFIX = "decoder.final_layernorm."


@dataclass(frozen=True)
class ParameterCounts:
    """Full and tensor-parallel-sharded element counts, by part of the model."""

    layers: List[int]  # full count of each global layer
    layers_sharded: List[int]  # full count of each layer's TP-split tensors
    embedding: int  # vocab x hidden (tied with the output layer)
    final_norm: int

    @property
    def total(self) -> int:
        return sum(self.layers) + self.embedding + self.final_norm

    def layer_per_rank(self, layer: int, tp: int) -> int:
        split = self.layers_sharded[layer]
        return self.layers[layer] - split + split // tp

    def stage_per_rank(self, layer_ids, tp: int, first: bool, last: bool, pipeline: int) -> int:
        """Parameters one TP rank of a pipeline stage holds. With PP > 1 the last stage keeps its
        own copy of the tied output weight (kept equal to the embedding by an all-reduce)."""
        count = sum(self.layer_per_rank(i, tp) for i in layer_ids)
        if first:
            count += self.embedding // tp
        if last:
            count += self.final_norm + (self.embedding // tp if pipeline > 1 else 0)
        return count


def count_model_parameters(config: GriffinConfig, backend: str = "local") -> ParameterCounts:
    layers: Dict[int, List[int]] = {i: [0, 0] for i in range(config.num_layers)}
    embedding = final_norm = 0
    for name, param in meta_model(config, backend).named_parameters():
        match = _LAYER.match(name)
        if match:
            entry = layers[int(match.group(1))]  # the meta model is one stage: local == global
            entry[0] += param.numel()
            if getattr(param, "tensor_model_parallel", False):
                entry[1] += param.numel()
        elif name == EMBEDDING:
            embedding += param.numel()
        elif name.startswith(FINAL_NORM_PREFIX):
            final_norm += param.numel()
        else:
            raise ValueError(f"parameter {name} belongs to no known part of the model.")
    return ParameterCounts(
        layers=[layers[i][0] for i in range(config.num_layers)],
        layers_sharded=[layers[i][1] for i in range(config.num_layers)],
        embedding=embedding,
        final_norm=final_norm,
    )

