"""Model checkpoints in Megatron-Core's distributed format (torch_dist), with an architecture record.

Layout of a checkpoint directory:
    <dir>/griffin_model.json   architecture, backend, format version (this file)
    <dir>/.metadata, *.distcp, common.pt, metadata.json   written by megatron.core.dist_checkpointing

Every module declares how its tensors are sharded, so a checkpoint saved at one tensor/pipeline
layout loads at any other. Training runs save Megatron-LM's layout, `<save>/iter_0000100/` plus
`latest_checkpointed_iteration.txt`; `resolve_checkpoint_dir` accepts either form.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.utils import unwrap_model

from . import compat
from .checkpoint import check_files, describe_files, in_process_writes
from .checkpoint.atomic import publish, staging_directory
from .config import GriffinConfig
from .errors import CheckpointError, InputFileError, OutputExistsError
from .output_paths import check_creatable_directory

MODEL_RECORD = "griffin_model.json"
LATEST_FILE = "latest_checkpointed_iteration.txt"
FILES_KEY = "files"  # {file name: {"size", "sha256"}} of every other file of the checkpoint
FORMAT_VERSION = 1

ARCHITECTURE_FIELDS = (
    "block_pattern",
    "num_layers",
    "hidden_size",
    "ffn_hidden_size",
    "num_attention_heads",
    "num_query_groups",
    "kv_channels",
    "lru_width",
    "rglru_num_heads",
    "conv_width",
    "attention_window",
    "rglru_c",
    "logits_soft_cap",
    "scale_embeddings",
    "vocab_size",
    "seq_length",
    "rotary_percent",
    "rotary_base",
    "layernorm_epsilon",
)


def architecture_dict(config: GriffinConfig) -> dict:
    """The fields that fix the tensors of a model (not how it is parallelised or run)."""
    return {name: getattr(config, name) for name in ARCHITECTURE_FIELDS}


def model_record(config: GriffinConfig, backend: str, **extra) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "backend": backend,
        "architecture": architecture_dict(config),
        "params_dtype": str(config.params_dtype).replace("torch.", ""),
        **extra,
    }


def megatron_training_record(directory: Union[str, Path]) -> Optional[dict]:
    """The record of a checkpoint written by Megatron-LM's `pretrain()` for Griffin
    (griffin_megatron.megatron_training): Megatron-LM keeps the run's arguments in the
    checkpoint's common state, and our entry point adds the record to them. None for any other
    directory."""
    from .megatron_training.arguments import RECORD_ARG

    if not dist_checkpointing.check_is_distributed_checkpoint(str(directory)):
        return None
    common = dist_checkpointing.load_common_state_dict(str(directory))
    return getattr(common.get("args"), RECORD_ARG, None) if isinstance(common, dict) else None


def read_model_record(directory: Union[str, Path]) -> dict:
    path = Path(directory) / MODEL_RECORD
    if not path.is_file():
        record = megatron_training_record(directory)
        if record is not None:
            return record
        raise CheckpointError(
            f"{directory} is not a griffin-megatron checkpoint (no {MODEL_RECORD}); pass a "
            "directory written by `griffin-megatron train --save` or `convert hf-to-mcore`."
        )
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint record {path} is damaged ({error}); copy the checkpoint again, or load "
            "an earlier iteration (--load <save>/iter_NNNNNNN)."
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("architecture"), dict):
        raise CheckpointError(
            f"checkpoint record {path} has no architecture; it is damaged or was not written by "
            "griffin-megatron: copy the checkpoint again, or load another one."
        )
    return record


def config_from_record(record: dict, **overrides) -> GriffinConfig:
    fields = {**record["architecture"], **overrides}
    return GriffinConfig(**fields)


def iteration_dir(save_dir: Union[str, Path], iteration: int) -> Path:
    """Megatron-LM's directory of one saved iteration: `<save_dir>/iter_0000100`."""
    return Path(save_dir) / f"iter_{iteration:07d}"


def resolve_checkpoint_dir(path: Union[str, Path]) -> Path:
    """A save directory with a `latest` pointer resolves to its newest complete iteration."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"checkpoint {path} does not exist; pass a directory written by `griffin-megatron "
            "train --save` (or one of its iter_* directories) or by `convert hf-to-mcore`."
        )
    latest = path / LATEST_FILE
    if latest.is_file():
        text = latest.read_bytes().decode(errors="replace").strip()
        if not text.isdigit():
            raise CheckpointError(
                f"{latest} holds {text[:40]!r}, not an iteration number; write the number of a "
                f"complete iter_* directory into it, or pass --load {path}/iter_NNNNNNN."
            )
        resolved = iteration_dir(path, int(text))
        if not resolved.is_dir():
            raise CheckpointError(
                f"{latest} points at iteration {text} but {resolved} is missing; write the number "
                f"of a complete iter_* directory into it, or pass --load {path}/iter_NNNNNNN."
            )
        return resolved
    return path


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
)


def copy_tokenizer_files(source: Union[str, Path], destination: Union[str, Path]) -> int:
    """Copy the tokenizer files found in `source`; returns how many were copied."""
    copied = 0
    for name in TOKENIZER_FILES:
        path = Path(source) / name
        if path.is_file():
            shutil.copy2(path, Path(destination) / name)
            copied += 1
    return copied


def find_tokenizer_dir(checkpoint_dir: Union[str, Path]) -> Optional[Path]:
    """The checkpoint directory itself, or the save directory above an iter_* folder."""
    for candidate in (Path(checkpoint_dir), Path(checkpoint_dir).parent):
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    return None


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _broadcast_object(value):
    """Rank 0's value on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _broadcast_path(path: Optional[Path]) -> Path:
    return Path(_broadcast_object(str(path) if path is not None else None))


def _as_list(model_chunks) -> list:
    return list(model_chunks) if isinstance(model_chunks, (list, tuple)) else [model_chunks]


def mark_latest_iteration(save_dir: Union[str, Path], iteration: int) -> None:
    """Point `latest_checkpointed_iteration.txt` at a completed save (all ranks call this;
    rank 0 replaces the file atomically)."""
    if _rank() == 0:
        latest = Path(save_dir) / LATEST_FILE
        staging = latest.with_name(LATEST_FILE + ".partial")
        staging.write_text(f"{iteration}\n")
        os.replace(staging, latest)
    _barrier()


def model_sharded_state_dict(model_chunks: Sequence, metadata: Optional[dict] = None) -> dict:
    """One sharded state dict over all model chunks (virtual pipeline chunks get `model{i}.`).

    Wrappers (DDP, Float16Module) are looked through, so keys are the model's own. Tensor keys
    name global layers, so the nesting does not matter for resharding.
    """
    chunks = unwrap_model(_as_list(model_chunks))
    if len(chunks) == 1:
        return chunks[0].sharded_state_dict(metadata=metadata)
    return {f"model{i}": chunk.sharded_state_dict(metadata=metadata) for i, chunk in enumerate(chunks)}


def check_writable(directory: Union[str, Path], overwrite: bool) -> None:
    out = check_creatable_directory(directory, "checkpoint directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{out} already exists and is not empty; choose a new directory or allow "
            "overwriting (--overwrite)."
        )


def save_sharded_atomically(
    sharded_state_dict: dict,
    directory: Union[str, Path],
    record: dict,
    *,
    overwrite: bool = False,
    tokenizer_dir: Optional[Union[str, Path]] = None,
    hashes: bool = True,
) -> Path:
    """dist_checkpointing.save into a fresh sibling directory, then rename it into place once
    every rank has finished, so an interrupted save never leaves a half-written `directory`.
    All ranks call this; rank 0 writes the model record (and tokenizer files). The record lists
    every file with its size and SHA-256 (sizes only with hashes=False), checked on load."""
    out = Path(directory)
    check_writable(out, overwrite)  # on every rank, so that all of them stop together
    staging = _broadcast_path(staging_directory(out) if _rank() == 0 else None)
    try:
        with compat.cuda_requests_on_cpu(), in_process_writes():
            dist_checkpointing.save(sharded_state_dict, str(staging))
        _barrier()
        if _rank() == 0 and tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, staging)
        names = _broadcast_object(sorted(p.name for p in staging.iterdir() if p.is_file())
                                  if _rank() == 0 else None)
        files = describe_files(staging, names, hashes=hashes)
        if _rank() == 0:
            (staging / MODEL_RECORD).write_text(
                json.dumps({**record, FILES_KEY: files}, indent=2) + "\n")
            publish(staging, out, replace=True)
        _barrier()
    except BaseException:
        if _rank() == 0:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def verify_checkpoint(directory: Union[str, Path], record: dict, hashes: bool = True) -> None:
    """Refuse a checkpoint whose files differ from what its record says was written
    (checkpoints written before records listed their files are taken as they are)."""
    if FILES_KEY in record:
        check_files(directory, record[FILES_KEY], hashes=hashes)


EXTRA_STATE = "_extra_state"


def _without_extra_state(sharded: dict) -> dict:
    """Transformer Engine modules (its fused linears and its final RMSNorm) keep FP8 scaling
    state in `_extra_state` entries. A checkpoint written by the local backend has none to give,
    and fresh FP8 state is what such a model should start from, so those entries are not
    requested when the backends differ."""
    return {
        key: _without_extra_state(value) if isinstance(value, dict) else value
        for key, value in sharded.items()
        if not str(key).endswith(EXTRA_STATE)
    }


def save_model_checkpoint(
    model_chunks: Union[torch.nn.Module, List[torch.nn.Module]],
    directory: Union[str, Path],
    *,
    backend: str = "local",
    overwrite: bool = False,
    extra_record: Optional[dict] = None,
    tokenizer_dir: Optional[Union[str, Path]] = None,
    hashes: bool = True,
) -> Path:
    """Save the model's weights as a distributed checkpoint (all ranks call this); atomic."""
    chunks = _as_list(model_chunks)
    record = model_record(unwrap_model(chunks[0]).config, backend, **(extra_record or {}))
    return save_sharded_atomically(
        model_sharded_state_dict(chunks), directory, record,
        overwrite=overwrite, tokenizer_dir=tokenizer_dir, hashes=hashes,
    )


def check_architecture(directory: Union[str, Path], config: GriffinConfig) -> dict:
    """The checkpoint's record, after checking that it holds this architecture."""
    record = read_model_record(directory)
    expected = architecture_dict(config)
    mismatched = {
        k: (record["architecture"].get(k), v)
        for k, v in expected.items()
        if record["architecture"].get(k) != v
    }
    if mismatched:
        name, (saved, wanted) = next(iter(mismatched.items()))
        raise CheckpointError(
            f"checkpoint {directory} holds another architecture ({name}={saved!r}, the model has "
            f"{wanted!r}); build the model from the checkpoint's record or pick the matching "
            "checkpoint."
        )
    return record


def load_model_state(model_chunks, loaded: dict) -> None:
    """Copy a loaded model state (as nested by `model_sharded_state_dict`) into the chunks."""
    chunks = unwrap_model(_as_list(model_chunks))
    if len(chunks) == 1:
        chunks[0].load_state_dict(loaded, strict=False)
    else:
        for i, chunk in enumerate(chunks):
            chunk.load_state_dict(loaded[f"model{i}"], strict=False)


def load_model_checkpoint(
    model_chunks: Union[torch.nn.Module, List[torch.nn.Module]], directory: Union[str, Path],
    verify_hashes: bool = True,
) -> None:
    """Load weights saved at any parallel layout into this layout's model chunks (in place).
    Reads model-only checkpoints and full training checkpoints alike."""
    chunks = _as_list(model_chunks)
    directory = resolve_checkpoint_dir(directory)
    record = check_architecture(directory, unwrap_model(chunks[0]).config)
    verify_checkpoint(directory, record, hashes=verify_hashes)
    request = model_sharded_state_dict(chunks)
    # Both backends save their weights under the same keys (layer_specs.FUSED_NORM_CHECKPOINT_KEYS
    # maps TE's fused norm weights); only TE's FP8 state has no counterpart.
    if record.get("backend", "local") != getattr(unwrap_model(chunks[0]), "backend", "local"):
        request = _without_extra_state(request)
    with compat.cuda_requests_on_cpu():
        loaded = dist_checkpointing.load(request, str(directory))
    load_model_state(chunks, loaded)


def build_model_from_checkpoint(
    directory: Union[str, Path], backend: Optional[str] = None, **config_overrides
):
    """A single-chunk GriffinModel for the current parallel state, weights loaded."""
    from .model import GriffinModel
    from .runtime import ensure_initialized

    ensure_initialized()
    directory = resolve_checkpoint_dir(directory)
    record = read_model_record(directory)
    backend = backend or record.get("backend", "local")
    from .state_dict import WEIGHTS_FROM_CHECKPOINT

    overrides = {
        "use_cpu_initialization": not torch.cuda.is_available(),
        **WEIGHTS_FROM_CHECKPOINT,
        **config_overrides,
    }
    config = config_from_record(record, **overrides)
    model = GriffinModel(config, backend=backend)
    load_model_checkpoint(model, directory)
    return model


def model_tokenizer_dir(load: Optional[str], hf_dir: Optional[str], tokenizer: Optional[str]) -> Path:
    """--tokenizer, or the tokenizer saved beside the model (a checkpoint given as --load, or an
    HF directory given as --hf-dir): what `generate`, `evaluate` and `lm-eval` read."""
    if tokenizer:
        return Path(tokenizer)
    model_dir = resolve_checkpoint_dir(load) if load else Path(hf_dir)
    found = find_tokenizer_dir(model_dir)
    if found is None:
        raise InputFileError(
            f"no tokenizer found beside {model_dir} (tokenizer.json, tokenizer.model or "
            "tokenizer_config.json); pass --tokenizer DIR."
        )
    return found


__all__ = [
    "MODEL_RECORD",
    "LATEST_FILE",
    "architecture_dict",
    "build_model_from_checkpoint",
    "config_from_record",
    "load_model_checkpoint",
    "model_tokenizer_dir",
    "read_model_record",
    "resolve_checkpoint_dir",
    "save_model_checkpoint",
]
