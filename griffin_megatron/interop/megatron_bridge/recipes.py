"""Megatron Bridge pretraining recipes for the paper's Hawk and Griffin sizes and RecurrentGemma.

Bridge's recipes are functions returning a `ConfigContainer` for Bridge's `pretrain()`. Ours are
made from the YAML recipes shipped in griffin_megatron/recipes (the same sizes, parallel layouts,
batch sizes and schedules that `griffin-megatron train --config NAME` uses), one function per
YAML file, named as Bridge names its recipes:

    griffin-14b.yaml       -> griffin_14b_pretrain_config()
    hawk-1.3b.yaml         -> hawk_1p3b_pretrain_config()
    recurrentgemma-2b.yaml -> recurrentgemma_2b_pretrain_config()

Each takes `data_paths` (Megatron dataset prefixes; None trains on Bridge's mock data),
`tokenizer_model` (an HF tokenizer name or path; None uses a null tokenizer of the preset's
vocabulary, enough for mock data) and `output_dir` (checkpoints and TensorBoard logs).
`RECIPE_KEYS_TO_BRIDGE` below says where each YAML key goes; a recipe with a key not in it is
refused by name rather than silently dropped.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional

import torch
from megatron.bridge.training.config import (
    CheckpointConfig,
    ConfigContainer,
    DistributedDataParallelConfig,
    GPTDatasetConfig,
    LoggerConfig,
    OptimizerConfig,
    RNGConfig,
    SchedulerConfig,
    TrainingConfig,
    ValidationConfig,
)
from megatron.bridge.training.mixed_precision import bf16_mixed
from megatron.bridge.training.tokenizers.config import TokenizerConfig

from ...errors import ConfigError
from ...presets import preset_architecture
from ...recipes import ARCHITECTURE_KEYS, architecture_overrides, load_recipe, recipe_names
from .provider import GriffinModelProvider

# YAML key -> (ConfigContainer section, field). The architecture keys (preset, seq-length, ...)
# go to the model provider through recipes.architecture_overrides; the rest are listed here.
RECIPE_KEYS_TO_BRIDGE = {
    "tensor-model-parallel-size": ("model", "tensor_model_parallel_size"),
    "pipeline-model-parallel-size": ("model", "pipeline_model_parallel_size"),
    "sequence-parallel": ("model", "sequence_parallel"),
    "backend": ("model", "backend"),
    "micro-batch-size": ("train", "micro_batch_size"),
    "global-batch-size": ("train", "global_batch_size"),
    "train-iters": ("train", "train_iters"),
    "lr": ("optimizer", "lr"),
    "min-lr": ("optimizer", "min_lr"),
    "weight-decay": ("optimizer", "weight_decay"),
    "adam-beta1": ("optimizer", "adam_beta1"),
    "adam-beta2": ("optimizer", "adam_beta2"),
    "clip-grad": ("optimizer", "clip_grad"),
    "lr-warmup-iters": ("scheduler", "lr_warmup_iters"),
    "lr-decay-style": ("scheduler", "lr_decay_style"),
    "eval-interval": ("validation", "eval_interval"),
    "eval-iters": ("validation", "eval_iters"),
    "save-interval": ("checkpoint", "save_interval"),
    "log-interval": ("logger", "log_interval"),
    "seed": ("rng", "seed"),
    "split": ("dataset", "split"),
}
# Keys that set several sections at once (handled in `pretrain_config`).
COMBINED_KEYS = {"preset", "seq-length", "bf16", "use-distributed-optimizer"}


def _sections(recipe: Dict[str, Any], source: str) -> Dict[str, Dict[str, Any]]:
    """The recipe's values by ConfigContainer section; unknown keys refused by name."""
    sections: Dict[str, Dict[str, Any]] = {}
    for key, value in recipe.items():
        if key in RECIPE_KEYS_TO_BRIDGE:
            section, field = RECIPE_KEYS_TO_BRIDGE[key]
            sections.setdefault(section, {})[field] = value
        elif key not in COMBINED_KEYS and key not in ARCHITECTURE_KEYS:
            raise ConfigError(
                f"{source}: key '{key}' has no Megatron Bridge counterpart in "
                "griffin_megatron.interop.megatron_bridge.recipes; add it to "
                "RECIPE_KEYS_TO_BRIDGE or drop it from the recipe."
            )
    return sections


def pretrain_config(
    recipe_name: str,
    data_paths: Optional[List[str]] = None,
    tokenizer_model: Optional[str] = None,
    output_dir: Optional[str] = None,
) -> ConfigContainer:
    """The ConfigContainer of one shipped (or YAML-file) recipe; see the module docstring."""
    recipe = load_recipe(recipe_name)
    sections = _sections(recipe, recipe_name)
    bf16 = bool(recipe.get("bf16", False))
    seq_length = recipe["seq-length"]
    distributed_optimizer = bool(recipe.get("use-distributed-optimizer", False))
    output_dir = output_dir or os.path.join(os.getcwd(), "nemo_experiments", recipe_name)

    architecture = {**preset_architecture(recipe["preset"]), **architecture_overrides(recipe)}
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = GriffinModelProvider(
        **architecture, **sections.get("model", {}),
        bf16=bf16, params_dtype=dtype, pipeline_dtype=dtype,
    )
    if tokenizer_model is None:
        tokenizer = TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=model.vocab_size)
    else:
        tokenizer = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                                    tokenizer_model=tokenizer_model)
    return ConfigContainer(
        model=model,
        train=TrainingConfig(**sections.get("train", {})),
        validation=ValidationConfig(**sections.get("validation", {})),
        optimizer=OptimizerConfig(
            optimizer="adam", bf16=bf16, use_distributed_optimizer=distributed_optimizer,
            **sections.get("optimizer", {}),
        ),
        scheduler=SchedulerConfig(**sections.get("scheduler", {})),
        ddp=DistributedDataParallelConfig(use_distributed_optimizer=distributed_optimizer,
                                          grad_reduce_in_fp32=True),
        dataset=GPTDatasetConfig(
            random_seed=recipe.get("seed", 1234),
            seq_length=seq_length,
            blend=None if data_paths is None else (list(data_paths), None),
            reset_position_ids=False,
            reset_attention_mask=False,
            eod_mask_loss=False,
            **sections.get("dataset", {}),
        ),
        logger=LoggerConfig(tensorboard_dir=os.path.join(output_dir, "tb_logs"),
                            **sections.get("logger", {})),
        tokenizer=tokenizer,
        checkpoint=CheckpointConfig(
            save=os.path.join(output_dir, "checkpoints"), ckpt_format="torch_dist",
            **sections.get("checkpoint", {}),
        ),
        rng=RNGConfig(**sections.get("rng", {})),
        mixed_precision=bf16_mixed() if bf16 else None,
    )


def function_name(recipe_name: str) -> str:
    """griffin-1.3b -> griffin_1p3b_pretrain_config (Bridge writes 1.3 as 1p3)."""
    return recipe_name.replace(".", "p").replace("-", "_") + "_pretrain_config"


def _recipe_function(recipe_name: str) -> Callable[..., ConfigContainer]:
    def recipe(data_paths=None, tokenizer_model=None, output_dir=None) -> ConfigContainer:
        return pretrain_config(recipe_name, data_paths, tokenizer_model, output_dir)

    recipe.__name__ = recipe.__qualname__ = function_name(recipe_name)
    recipe.__doc__ = f"Bridge ConfigContainer of the shipped recipe {recipe_name!r}."
    return recipe


# One function per shipped recipe, e.g. griffin_14b_pretrain_config.
RECIPES: Dict[str, Callable[..., ConfigContainer]] = {
    function_name(name): _recipe_function(name) for name in recipe_names()
}
globals().update(RECIPES)

__all__ = ["RECIPES", "RECIPE_KEYS_TO_BRIDGE", "pretrain_config", *RECIPES]
