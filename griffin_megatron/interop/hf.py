"""`from_hf` and `to_hf`: HuggingFace RecurrentGemma checkpoints in and out, no launcher needed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor

from ..checkpoint import atomic_directory
from ..checkpoint.tokenizer_files import copy_tokenizer_files
from ..config import GriffinConfig
from ..errors import InputFileError
from ..output_paths import HF_EXPORT, check_output_directory
from ..checkpoint.full_state import (
    WEIGHTS_FROM_CHECKPOINT,
    gather_full_state_dict,
    load_full_state_dict,
)
from .hf_config import architecture_from_hf_config, hf_config_from_architecture, read_hf_config
from .hf_mapping import check_hf_state, hf_to_megatron, megatron_to_hf

def _read_weights(directory: Path) -> Dict[str, Tensor]:
    from safetensors.torch import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.exists():
        return load_file(str(single))
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(directory / shard)))
        return state
    legacy = directory / "pytorch_model.bin"
    if legacy.exists():
        return torch.load(str(legacy), map_location="cpu", weights_only=True)
    raise InputFileError(
        f"no weights in {directory}: expected model.safetensors, a sharded "
        "model.safetensors.index.json or pytorch_model.bin, as `save_pretrained` writes."
    )


def load_hf_checkpoint(path: Union[str, Path]):
    """(config.json's fields, HF state dict) of a local HF RecurrentGemma directory."""
    directory = Path(path)
    hf_config = read_hf_config(directory)
    from safetensors import SafetensorError

    try:
        weights = _read_weights(directory)
    except InputFileError:
        raise
    except (SafetensorError, OSError, RuntimeError, KeyError, json.JSONDecodeError) as error:
        # (truncated safetensors, a damaged pytorch_model.bin or shard index)
        raise InputFileError(
            f"the weights in {directory} cannot be read ({type(error).__name__}: {error}); the "
            "file is truncated or damaged: copy the model again."
        ) from None
    return hf_config, weights


def from_hf(
    path_or_model,
    *,
    params_dtype: torch.dtype = torch.float32,
    backend: str = "local",
    **config_overrides,
):
    """A GriffinModel holding the weights of an HF RecurrentGemma model.

    Args:
        path_or_model: a directory written by `save_pretrained`, or a RecurrentGemmaForCausalLM.
        params_dtype: parameter dtype of the returned model (float32 or bfloat16).
        backend: "local" or "te".
        config_overrides: extra GriffinConfig fields (e.g. tensor_model_parallel_size,
            rglru_backend); parallel sizes must match the initialised parallel state.

    Initialises a one-process group (and Megatron's parallel state) when none exists. The model
    is on the CPU, in eval mode.
    """
    from ..model import GriffinModel
    from ..runtime import ensure_initialized

    ensure_initialized(seed=None)  # the weights are HF's
    if isinstance(path_or_model, (str, os.PathLike)):
        hf_config, hf_state = load_hf_checkpoint(path_or_model)
    else:
        hf_config, hf_state = path_or_model.config, path_or_model.state_dict()
    architecture = architecture_from_hf_config(hf_config)
    config = GriffinConfig(
        **{
            **architecture,
            "params_dtype": params_dtype,
            "bf16": params_dtype == torch.bfloat16,
            "use_cpu_initialization": True,
            **WEIGHTS_FROM_CHECKPOINT,
            **config_overrides,
        }
    )
    check_hf_state(hf_state, config)
    model = GriffinModel(config, backend=backend)
    load_full_state_dict(model, hf_to_megatron(hf_state, config))
    return model.eval()


def to_hf(
    model,
    out_dir: Union[str, Path],
    *,
    dtype: Optional[torch.dtype] = None,
    tokenizer_dir: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` as an HF RecurrentGemma directory (config.json + model.safetensors).

    Works at any tensor-parallel size (every rank calls it; rank 0 writes) with pipeline size 1.
    The directory appears complete or not at all: it is written beside its final path and
    renamed into place. Tokenizer files found in `tokenizer_dir` are copied along.
    """
    from safetensors.torch import save_file

    config: GriffinConfig = model.config
    hf_config = hf_config_from_architecture(config)
    out = check_output_directory(out_dir, "--out", overwrite, replaces=HF_EXPORT)
    full = gather_full_state_dict(model)
    if dist.is_initialized() and dist.get_rank() != 0:
        dist.barrier()
        return out
    state = megatron_to_hf(full, config)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    dtype_name = str(next(iter(state.values())).dtype).replace("torch.", "")
    setattr(hf_config, "dtype" if hasattr(hf_config, "dtype") else "torch_dtype", dtype_name)
    try:
        with atomic_directory(out, replace=True) as tmp:
            hf_config.save_pretrained(str(tmp))
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            if tokenizer_dir is not None:
                copy_tokenizer_files(tokenizer_dir, tmp)
    finally:
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
    return out
