"""A training layout: how a recipe spreads over GPUs, and the batch it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Layout:
    gpus: int
    num_layers: int
    seq_length: int
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    context_parallel: int = 1
    layers_per_virtual_stage: Optional[int] = None
    sequence_parallel: bool = False
    micro_batch_size: int = 1
    global_batch_size: int = 1
    distributed_optimizer: bool = False
    recompute_granularity: Optional[str] = None
    recompute_method: Optional[str] = None
    recompute_num_layers: Optional[int] = None
    bf16: bool = True
    backend: str = "local"

    @classmethod
    def from_recipe(cls, recipe: Dict[str, Any], gpus: int, config) -> "Layout":
        """The layout of a recipe for a model config, with Megatron-LM's defaults for the keys a
        recipe leaves out."""
        return cls(
            gpus=gpus,
            num_layers=config.num_layers,
            seq_length=recipe.get("seq-length", config.seq_length),
            tensor_parallel=recipe.get("tensor-model-parallel-size", 1),
            pipeline_parallel=recipe.get("pipeline-model-parallel-size", 1),
            context_parallel=recipe.get("context-parallel-size", 1),
            layers_per_virtual_stage=recipe.get("num-layers-per-virtual-pipeline-stage"),
            sequence_parallel=recipe.get("sequence-parallel", False),
            micro_batch_size=recipe.get("micro-batch-size", 1),
            global_batch_size=recipe.get("global-batch-size", recipe.get("micro-batch-size", 1)),
            distributed_optimizer=recipe.get("use-distributed-optimizer", False),
            recompute_granularity=recipe.get("recompute-granularity"),
            recompute_method=recipe.get("recompute-method"),
            recompute_num_layers=recipe.get("recompute-num-layers"),
            bf16=recipe.get("bf16", False),
            backend=recipe.get("backend", "local"),
        )

    @property
    def model_parallel(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def data_parallel(self) -> int:
        return self.gpus // (self.model_parallel * self.context_parallel)

    @property
    def shard_length(self) -> int:
        """Tokens of each sequence one context-parallel rank holds."""
        return self.seq_length // self.context_parallel

    @property
    def virtual_stages(self) -> int:
        """Model chunks per pipeline rank (1 without interleaving)."""
        if self.layers_per_virtual_stage is None:
            return 1
        return self.num_layers // self.pipeline_parallel // self.layers_per_virtual_stage

    @property
    def num_microbatches(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.data_parallel)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_length

    def describe(self) -> str:
        parts = [f"TP {self.tensor_parallel}", f"PP {self.pipeline_parallel}"]
        if self.virtual_stages > 1:
            parts[-1] += f" (interleaved, {self.virtual_stages} virtual stages)"
        if self.context_parallel > 1:
            parts.append(f"CP {self.context_parallel}")
        parts.append(f"DP {self.data_parallel}")
        extras = []
        if self.sequence_parallel:
            extras.append("sequence parallel")
        if self.distributed_optimizer:
            extras.append("distributed optimizer")
        if self.recompute_granularity:
            method = f" {self.recompute_method} {self.recompute_num_layers}" if self.recompute_method else ""
            extras.append(f"recompute {self.recompute_granularity}{method}")
        text = " x ".join(parts) + f" = {self.gpus} GPUs"
        return text + (f" ({', '.join(extras)})" if extras else "")
