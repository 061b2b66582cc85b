"""One run configuration for both training loops: `griffin-megatron train` (training/) and
Megatron-LM's `pretrain()` (megatron_training/) turn their options into the GriffinConfig and the
dataset config here, so a rule changed for one loop holds for the other.

    padded_vocab_size       the embedding table's size for a tokenizer's vocabulary
    architecture_from_options   the preset's architecture with the options that override it
                            (the rows of options.py that name a GriffinConfig field)
    cuda_settings           the CUDA/CPU ModelParallelConfig fields, gradient-accumulation fusion
    train_settings / megatron_lm_settings   each loop's parallel, precision, recompute settings
    griffin_config          architecture + vocabulary + settings -> GriffinConfig
    gpt_dataset_config      Megatron's GPTDatasetConfig with Griffin's dataset conventions
    RunConfig               `train`'s settings as one typed object, built once from its options

Nothing here imports `megatron.training`, so `train` runs on every supported megatron-core.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import torch

from . import options
from .config import GriffinConfig
from .device import run_settings
from .presets import preset_architecture


def padded_vocab_size(vocab_size: int, divisible_by: int, tensor_parallel: int) -> int:
    """The embedding table grows to a multiple of both divisible_by and the TP size. Megatron-LM
    pads to divisible_by x TP instead, which makes the vocabulary (an architecture field)
    depend on the layout; with the least common multiple, a checkpoint trained at one TP size
    resumes at another (for TP sizes that divide divisible_by)."""
    multiple = math.lcm(divisible_by, tensor_parallel)
    return int(math.ceil(vocab_size / multiple) * multiple)


def architecture_from_options(values: argparse.Namespace) -> dict:
    """The preset's architecture with the architecture options the user set: the rows of
    options.py that name a GriffinConfig field (Megatron-LM's parser has the same dests for its
    own, num_layers ... seq_length; megatron_training adds the Griffin-only rows), and
    Megatron-LM's grouped-query attention where its parser gives it."""
    architecture = preset_architecture(values.preset)
    for option in options.OPTIONS:
        if option.field is None:
            continue
        value = getattr(values, option.dest)
        if value is not None:
            architecture[option.field] = value
    if getattr(values, "group_query_attention", False):
        architecture["num_query_groups"] = values.num_query_groups
    return architecture


# How each loop asks for the fused weight-gradient GEMM -> device.gradient_accumulation_fusion's
# `requested` (None: wherever it can run). `train` says auto/on/off; Megatron-LM's parser has
# the flag on by default ("wherever it can run") and --no-gradient-accumulation-fusion.
FUSION_REQUESTS = {"auto": None, "on": True, "off": False, True: None, False: False}


def cuda_settings(fusion: Union[str, bool], cpu_initialization: bool = False) -> dict:
    """The ModelParallelConfig fields that depend on CUDA (device.run_settings), for both
    loops; `fusion` as either loop's option gives it (FUSION_REQUESTS)."""
    return run_settings(FUSION_REQUESTS[fusion], cpu_initialization=cpu_initialization)


def train_settings(values: argparse.Namespace) -> dict:
    """`train`'s parallel, precision and recompute options as GriffinConfig fields."""
    dtype = torch.bfloat16 if values.bf16 else torch.float32
    settings = dict(
        tensor_model_parallel_size=values.tensor_model_parallel_size,
        pipeline_model_parallel_size=values.pipeline_model_parallel_size,
        num_layers_per_virtual_pipeline_stage=values.num_layers_per_virtual_pipeline_stage,
        context_parallel_size=values.context_parallel_size,
        num_layers_in_first_pipeline_stage=values.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=values.decoder_last_pipeline_num_layers,
        sequence_parallel=values.sequence_parallel,
        local_attention_impl=values.local_attention,
        bf16=values.bf16,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        recompute_granularity=values.recompute_granularity,
        recompute_method=values.recompute_method,
        recompute_num_layers=values.recompute_num_layers,
        # The loss is a token-weighted mean over the whole global batch (all micro-batches and
        # data-parallel ranks), whatever the split into micro-batches.
        calculate_per_token_loss=True,
        **cuda_settings(getattr(values, "gradient_accumulation_fusion", "auto")),
    )
    if values.num_layers_per_virtual_pipeline_stage is not None:
        # As Megatron-LM: interleaved stages exchange activations with overlapped p2p.
        settings.update(overlap_p2p_comm=True, batch_p2p_comm=False)
    return settings


# TransformerConfig run settings (not architecture) that Megatron-LM's options give as well.
MEGATRON_LM_RUN_FIELDS = ("recompute_granularity", "recompute_method", "recompute_num_layers",
                          "calculate_per_token_loss")


def megatron_lm_settings(values: argparse.Namespace) -> dict:
    """Megatron-LM's options (parallel sizes, precision, communication, recompute, loss) as
    GriffinConfig fields, read as its `core_transformer_config_from_args` reads them."""
    from megatron.core.model_parallel_config import ModelParallelConfig

    settings = {f.name: getattr(values, f.name) for f in dataclasses.fields(ModelParallelConfig)
                if hasattr(values, f.name)}
    settings.update({name: getattr(values, name) for name in MEGATRON_LM_RUN_FIELDS})
    settings.update(
        pipeline_dtype=values.params_dtype,
        batch_p2p_comm=not values.overlap_p2p_comm,
        num_layers_in_first_pipeline_stage=values.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=values.decoder_last_pipeline_num_layers,
        local_attention_impl=values.local_attention,
    )
    # The fusion was settled (and said) right after parsing (check_griffin_arguments).
    settings.update(cuda_settings(values.gradient_accumulation_fusion,
                                  cpu_initialization=values.use_cpu_initialization))
    return settings


def griffin_config(architecture: dict, vocab_size: int, settings: dict) -> GriffinConfig:
    """The run's GriffinConfig; GriffinConfigError (one sentence) when inconsistent, or
    TransformerConfig's own AssertionError, which each loop words its own way."""
    return GriffinConfig(**{**architecture, **settings, "vocab_size": vocab_size})


def build_model_config(values: argparse.Namespace,
                       vocab_size: Optional[int] = None) -> GriffinConfig:
    """`train`'s (and `plan`'s) GriffinConfig from its options; `vocab_size` None keeps the
    preset's, padded to the tensor-parallel size only (enough to check a layout before the
    tokenizer is known, and what `plan` sizes when given no vocabulary)."""
    from .errors import ConfigError

    architecture = architecture_from_options(values)
    if vocab_size is None:
        vocab_size = padded_vocab_size(architecture["vocab_size"], 1,
                                       values.tensor_model_parallel_size)
    try:
        return griffin_config(architecture, vocab_size, train_settings(values))
    except AssertionError as error:
        # TransformerConfig checks some combinations with bare asserts; keep their message.
        raise ConfigError(f"the model settings are inconsistent: {error}") from None


def with_vocab_size(config: GriffinConfig, vocab_size: int) -> GriffinConfig:
    """`config` for another vocabulary. `train` checks its layout with the preset's vocabulary
    before the tokenizer is read (so a bad layout stops before any data is touched), then trains
    with the tokenizer's: the vocabulary is the one field that differs, so the second config is
    this one step, not a second build from the options."""
    return dataclasses.replace(config, vocab_size=vocab_size)


def gpt_dataset_config(blend, seq_length: int, split: Optional[str], seed: int,
                       cache_path: Optional[str], tokenizer, eod_mask_loss: bool = False,
                       blend_per_split=None, num_dataset_builder_threads: Optional[int] = None,
                       mmap_bin_files: Optional[bool] = None):
    """Megatron's GPTDatasetConfig with the conventions of every Griffin dataset (both training
    loops, and evaluation): positions restart at each document, which is where the model resets
    its recurrence and attention, and no attention mask is built (the model derives it).
    `tokenizer` is Megatron-shaped (data.megatron_adapter, or Megatron-LM's own); the builder
    threads and memory-mapping keep Megatron's defaults unless given."""
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    optional = {name: value for name, value in (
        ("num_dataset_builder_threads", num_dataset_builder_threads),
        ("mmap_bin_files", mmap_bin_files)) if value is not None}
    return GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=split,
        path_to_cache=cache_path,
        tokenizer=tokenizer,
        reset_position_ids=True,
        reset_attention_mask=False,
        eod_mask_loss=eod_mask_loss,
        create_attention_mask=False,
        **optional,
    )


# `train`'s settings, one section per group of options.py (a field per option dest, typed by
# its row); RunConfig.from_options fills them, and a test checks that every row has its field.


@dataclass(frozen=True)
class ModelOptions:
    preset: str
    block_pattern: Optional[str]
    num_layers: Optional[int]
    hidden_size: Optional[int]
    ffn_hidden_size: Optional[int]
    num_attention_heads: Optional[int]
    kv_channels: Optional[int]
    lru_width: Optional[int]
    rglru_num_heads: Optional[int]
    attention_window: Optional[int]
    seq_length: int  # the run's: the option, else the preset's
    backend: str
    local_attention: str
    make_vocab_size_divisible_by: int


@dataclass(frozen=True)
class ParallelOptions:
    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    context_parallel_size: int
    num_layers_per_virtual_pipeline_stage: Optional[int]
    decoder_first_pipeline_num_layers: Optional[int]
    decoder_last_pipeline_num_layers: Optional[int]
    sequence_parallel: bool
    use_distributed_optimizer: bool
    gradient_accumulation_fusion: str


@dataclass(frozen=True)
class BatchOptions:
    micro_batch_size: int
    global_batch_size: int  # the option, else micro-batch x data-parallel size
    train_iters: int
    lr: float
    min_lr: float
    lr_warmup_iters: int
    lr_decay_iters: Optional[int]
    lr_decay_style: str
    weight_decay: float
    clip_grad: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    bf16: bool
    seed: int


@dataclass(frozen=True)
class RecomputeOptions:
    recompute_granularity: Optional[str]
    recompute_method: Optional[str]
    recompute_num_layers: Optional[int]


@dataclass(frozen=True)
class DataOptions:
    data_path: Optional[List[str]]  # None: the embedded default run prepares its corpus
    split: str
    eod_mask_loss: bool
    tokenizer: Optional[str]
    data_cache_path: Optional[str]
    num_workers: int


@dataclass(frozen=True)
class CheckpointOptions:
    save: Optional[str]
    load: Optional[str]
    finetune: bool
    save_interval: Optional[int]
    no_save: bool
    override_opt_param_scheduler: bool
    use_checkpoint_opt_param_scheduler: bool
    no_checkpoint_hashes: bool


@dataclass(frozen=True)
class EvaluationOptions:
    eval_interval: int
    eval_iters: int


@dataclass(frozen=True)
class LoggingOptions:
    log_interval: int
    tensorboard_dir: Optional[str]
    wandb_project: Optional[str]
    wandb_exp_name: Optional[str]


SECTIONS = {
    "model": ModelOptions, "parallel": ParallelOptions, "batch": BatchOptions,
    "recompute": RecomputeOptions, "data": DataOptions, "checkpoint": CheckpointOptions,
    "evaluation": EvaluationOptions, "logging": LoggingOptions,
}


@dataclass(frozen=True)
class RunConfig:
    """`griffin-megatron train`'s settings, complete (command line, --config file, defaults)
    and checked; lower layers get the fields they need from it, never the options namespace."""

    model: ModelOptions
    parallel: ParallelOptions
    batch: BatchOptions
    recompute: RecomputeOptions
    data: DataOptions
    checkpoint: CheckpointOptions
    evaluation: EvaluationOptions
    logging: LoggingOptions
    default_run: bool  # no --data-path: the embedded default run (training/default_run.py)

    @classmethod
    def from_options(cls, values: argparse.Namespace, config: GriffinConfig,
                     default_run: bool) -> "RunConfig":
        """From the merged and checked options (training.arguments) and the GriffinConfig they
        were checked with, which settles the sequence length."""
        given = {**vars(values), "seq_length": config.seq_length}
        sections = {
            name: section(**{f.name: given[f.name] for f in dataclasses.fields(section)})
            for name, section in SECTIONS.items()
        }
        return cls(**sections, default_run=default_run)

    def replace(self, section: str, **changes: Any) -> "RunConfig":
        """This config with fields of one section changed (what a run settles once it runs:
        the default run's corpus, the agreed --save directory)."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)})

    def as_options(self) -> Dict[str, Any]:
        """option dest -> value, every section's (the run's settings as a flat record)."""
        return {f.name: getattr(getattr(self, name), f.name)
                for name, section in SECTIONS.items() for f in dataclasses.fields(section)}

    def data_parallel_size(self, world: int) -> int:
        parallel = self.parallel
        return world // (parallel.tensor_model_parallel_size
                         * parallel.pipeline_model_parallel_size * parallel.context_parallel_size)
