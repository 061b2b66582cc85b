"""A training layout: how a recipe spreads over GPUs, and the batch it runs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from .. import options
from ..config import GriffinConfig


@dataclass(frozen=True)
class Layout:
    """The job's side of a plan; every field comes from the run's GriffinConfig (already checked
    by its own layout rules) or from the run's options, never from defaults of its own."""

    gpus: int
    num_layers: int
    seq_length: int
    tensor_parallel: int
    pipeline_parallel: int
    context_parallel: int
    virtual_stages: int  # model chunks per pipeline rank (1 without interleaving)
    sequence_parallel: bool
    micro_batch_size: int
    global_batch_size: int
    distributed_optimizer: bool
    recompute_granularity: Optional[str]
    recompute_method: Optional[str]
    recompute_num_layers: Optional[int]
    bf16: bool
    backend: str

    @classmethod
    def of(cls, config: GriffinConfig, args: argparse.Namespace, gpus: int) -> "Layout":
        """The layout of a run: its config, its options (`options.options_namespace`) and GPUs;
        the global batch defaults to micro-batch x data-parallel size, as in `train`."""
        return cls(
            gpus=gpus,
            num_layers=config.num_layers,
            seq_length=config.seq_length,
            tensor_parallel=config.tensor_model_parallel_size,
            pipeline_parallel=config.pipeline_model_parallel_size,
            context_parallel=config.context_parallel_size,
            virtual_stages=config.virtual_pipeline_model_parallel_size or 1,
            sequence_parallel=config.sequence_parallel,
            micro_batch_size=args.micro_batch_size,
            global_batch_size=options.global_batch_size(args, gpus),
            distributed_optimizer=args.use_distributed_optimizer,
            recompute_granularity=config.recompute_granularity,
            recompute_method=config.recompute_method,
            recompute_num_layers=config.recompute_num_layers,
            bf16=config.bf16,
            backend=args.backend,
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
