"""Hawk and Griffin for Megatron-LM's training loop: a `ModelConfig` / `ModelBuilder` pair of
megatron-core 0.19's `megatron.training.models` API.

`pretrain()` builds the model from `PretrainConfigContainer.model` by calling
`GriffinModelConfig.get_builder_cls()(config).build_distributed_models(...)`; the builder makes
one GriffinModel per (virtual) pipeline stage and hands them to Megatron's own
`unimodal_build_distributed_models`, which sets the tensor-parallel attributes, wraps them in
Float16Module for bf16/fp16, and in DistributedDataParallel, exactly as for GPTModel.

Importing this module needs `megatron.training.models` (megatron-core >= 0.19).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Tuple

from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.enums import ModelType
from megatron.core.pipeline_parallel.utils import (
    is_pp_first_stage,
    is_pp_last_stage,
    is_vp_first_stage,
    is_vp_last_stage,
)
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.module import Float16Module, MegatronModule
from megatron.training.models.base import ModelBuilder, ModelConfig, compose_hooks
from megatron.training.models.dist_utils import unimodal_build_distributed_models

from ..config import GriffinConfig
from ..model import GriffinModel
from ..modules.rglru import warm_up_kernels


@dataclass(kw_only=True)
class GriffinModelConfig(ModelConfig):
    """What `pretrain()` needs to build Hawk or Griffin.

    transformer: the GriffinConfig (architecture, parallel sizes, precision).
    backend: "local" (PyTorch layers; CPU and GPU) or "te" (Transformer Engine).
    """

    builder: ClassVar[str] = "griffin_megatron.megatron_training.model_builder.GriffinModelBuilder"
    transformer: GriffinConfig
    backend: str = "local"
    # (micro-batch, sequence length) to compile and tune the RG-LRU kernels for once the model
    # is built, before the first step; None skips it.
    kernel_warm_up: Optional[Tuple[int, int]] = None


class GriffinModelBuilder(ModelBuilder[GriffinModel, GriffinModelConfig]):
    """Builds GriffinModel stages for `megatron.training.pretrain()`."""

    def build_model(
        self,
        pg_collection: ProcessGroupCollection,
        pre_process: Optional[bool] = None,
        post_process: Optional[bool] = None,
        vp_stage: Optional[int] = None,
    ) -> GriffinModel:
        config = self._model_config.transformer
        vp_size = config.virtual_pipeline_model_parallel_size
        if pre_process is None:
            pre_process = is_vp_first_stage(vp_stage, vp_size) and is_pp_first_stage(pg_collection.pp)
        if post_process is None:
            post_process = is_vp_last_stage(vp_stage, vp_size) and is_pp_last_stage(pg_collection.pp)
        return GriffinModel(
            config,
            backend=self._model_config.backend,
            pre_process=pre_process,
            post_process=post_process,
            vp_stage=vp_stage,
            pg_collection=pg_collection,
        )

    def build_distributed_models(
        self,
        pg_collection: ProcessGroupCollection,
        ddp_config: Optional[DistributedDataParallelConfig] = None,
        overlap_param_gather_with_optimizer_step: bool = False,
        use_megatron_fsdp: bool = False,
        use_torch_fsdp2: bool = False,
        wrap_with_ddp: bool = True,
        data_parallel_random_init: bool = False,
        mixed_precision_wrapper: Optional[Callable[[Any, MegatronModule], MegatronModule]] = Float16Module,
        model_type: ModelType = ModelType.encoder_or_decoder,
    ) -> list:
        chunks = unimodal_build_distributed_models(
            self.build_model,
            self._model_config.transformer,
            pg_collection,
            ddp_config,
            overlap_param_gather_with_optimizer_step,
            use_megatron_fsdp,
            use_torch_fsdp2,
            wrap_with_ddp,
            data_parallel_random_init,
            mixed_precision_wrapper,
            compose_hooks(self._model_config.pre_wrap_hooks),
            model_type,
        )
        wrapped = compose_hooks(self._model_config.post_wrap_hooks)(chunks)
        chunks = chunks if wrapped is None else wrapped
        if self._model_config.kernel_warm_up is not None:
            warm_up_kernels(chunks, *self._model_config.kernel_warm_up)
        return chunks
