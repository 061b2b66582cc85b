"""What a checkpoint directory says about itself: the architecture record (`griffin_model.json`),
Megatron-LM's `latest` pointer over iteration directories, and the check that the files on disk
are the ones the record lists.

Layout of a checkpoint directory:
    <dir>/griffin_model.json   architecture, backend, format version, every file's size and hash
    <dir>/.metadata, *.distcp, common.pt, metadata.json   written by Megatron's dist_checkpointing

Training runs save Megatron-LM's layout, `<save>/iter_0000100/` plus
`latest_checkpointed_iteration.txt`; `resolve_checkpoint_dir` accepts either form.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from megatron.core import dist_checkpointing

from .. import compat
from ..config import GriffinConfig
from ..errors import CheckpointError, InputFileError
from .integrity import check_files
from .ranks import barrier, rank
from .tokenizer_files import TOKENIZER_FILES

MODEL_RECORD = "griffin_model.json"
LATEST_FILE = "latest_checkpointed_iteration.txt"
FILES_KEY = "files"  # {file name: {"size", "sha256"}} of every other file of the checkpoint
FORMAT_VERSION = 1
# Megatron-LM's pretrain() entry (griffin_megatron.megatron_training) saves the record as this
# attribute of the run's args, in every checkpoint's common.pt.
RECORD_ARG = "griffin_model_record"

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
    "hidden_activation",
    "share_embeddings_and_output_weights",
)
# Fields recorded since they became choices; a record written before has the value that was
# then fixed.
ADDED_FIELD_DEFAULTS = {
    "hidden_activation": "gelu_pytorch_tanh",
    "share_embeddings_and_output_weights": True,
}


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
    if not dist_checkpointing.check_is_distributed_checkpoint(str(directory)):
        return None
    common = compat.common_state.load_common_state(directory)
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


def recorded_architecture(record: dict) -> dict:
    """The record's architecture, with the fields added since it was written at their value
    of that time."""
    return {**ADDED_FIELD_DEFAULTS, **record["architecture"]}


def config_from_record(record: dict, **overrides) -> GriffinConfig:
    fields = {**recorded_architecture(record), **overrides}
    return GriffinConfig(**fields)


def check_architecture(directory: Union[str, Path], config: GriffinConfig,
                       record: Optional[dict] = None) -> dict:
    """The checkpoint's record (read here unless given), after checking that it holds this
    architecture."""
    record = read_model_record(directory) if record is None else record
    expected = architecture_dict(config)
    saved = recorded_architecture(record)
    mismatched = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
    if mismatched:
        name, (saved, wanted) = next(iter(mismatched.items()))
        raise CheckpointError(
            f"checkpoint {directory} holds another architecture ({name}={saved!r}, the model has "
            f"{wanted!r}); build the model from the checkpoint's record or pick the matching "
            "checkpoint."
        )
    return record


def verify_checkpoint(directory: Union[str, Path], record: dict, hashes: bool = True) -> None:
    """Refuse a checkpoint whose files differ from what its record says was written
    (checkpoints written before records listed their files are taken as they are). The weights
    do not need the tokenizer saved beside them: a missing tokenizer file is left to whoever
    reads the tokenizer (loading.model_tokenizer_dir), a damaged one is still refused."""
    if FILES_KEY in record:
        files = {
            name: entry for name, entry in record[FILES_KEY].items()
            if name not in TOKENIZER_FILES or (Path(directory) / name).exists()
        }
        check_files(directory, files, hashes=hashes)


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


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory found and its record read, once, for the steps that follow."""

    directory: Path  # the iteration directory where the path was a save directory
    record: dict


def open_checkpoint(path: Union[str, Path]) -> Checkpoint:
    directory = resolve_checkpoint_dir(path)
    return Checkpoint(directory, read_model_record(directory))


def mark_latest_iteration(save_dir: Union[str, Path], iteration: int) -> None:
    """Point `latest_checkpointed_iteration.txt` at a completed save (all ranks call this;
    rank 0 replaces the file atomically)."""
    if rank() == 0:
        latest = Path(save_dir) / LATEST_FILE
        staging = latest.with_name(LATEST_FILE + ".partial")
        staging.write_text(f"{iteration}\n")
        os.replace(staging, latest)
    barrier()


__all__ = [
    "ARCHITECTURE_FIELDS",
    "Checkpoint",
    "FORMAT_VERSION",
    "LATEST_FILE",
    "MODEL_RECORD",
    "architecture_dict",
    "check_architecture",
    "config_from_record",
    "iteration_dir",
    "mark_latest_iteration",
    "megatron_training_record",
    "model_record",
    "open_checkpoint",
    "read_model_record",
    "recorded_architecture",
    "resolve_checkpoint_dir",
    "verify_checkpoint",
]
