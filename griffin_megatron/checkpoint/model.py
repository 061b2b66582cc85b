"""Model-only checkpoints: a model's weights (all its pipeline chunks) saved as one torch_dist
checkpoint with its architecture record, loaded into any tensor/pipeline layout, and a model
built from a checkpoint's record.

Every module declares how its tensors are sharded, so a checkpoint saved at one tensor/pipeline
layout loads at any other. The reader takes training checkpoints (checkpoint.distributed) too.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
from megatron.core import dist_checkpointing
from megatron.core.utils import unwrap_model

from .. import compat
from .record import (
    Checkpoint,
    check_architecture,
    config_from_record,
    model_record,
    open_checkpoint,
    verify_checkpoint,
)
from .sharded_save import save_sharded_atomically


def _as_list(model_chunks) -> list:
    return list(model_chunks) if isinstance(model_chunks, (list, tuple)) else [model_chunks]


def model_sharded_state_dict(model_chunks: Sequence, metadata: Optional[dict] = None) -> dict:
    """One sharded state dict over all model chunks (virtual pipeline chunks get `model{i}.`).

    Wrappers (DDP, Float16Module) are looked through, so keys are the model's own. Tensor keys
    name global layers, so the nesting does not matter for resharding.
    """
    chunks = unwrap_model(_as_list(model_chunks))
    if len(chunks) == 1:
        return chunks[0].sharded_state_dict(metadata=metadata)
    return {f"model{i}": chunk.sharded_state_dict(metadata=metadata) for i, chunk in enumerate(chunks)}


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
    _load_opened(model_chunks, open_checkpoint(directory), verify_hashes)


def _load_opened(model_chunks, checkpoint: Checkpoint, verify_hashes: bool = True) -> None:
    chunks = _as_list(model_chunks)
    directory, record = checkpoint.directory, checkpoint.record
    check_architecture(directory, unwrap_model(chunks[0]).config, record)
    verify_checkpoint(directory, record, hashes=verify_hashes)
    request = model_sharded_state_dict(chunks)
    # Both backends save their weights under the same keys (layer_specs.FUSED_NORM_CHECKPOINT_KEYS
    # maps TE's fused norm weights); only TE's FP8 state has no counterpart.
    if record.get("backend", "local") != getattr(unwrap_model(chunks[0]), "backend", "local"):
        request = _without_extra_state(request)
    with compat.cuda_requests_on_cpu():
        loaded = dist_checkpointing.load(
            request, str(directory), **compat.common_state.load_kwargs(directory))
    load_model_state(chunks, loaded)


def build_model_from_checkpoint(
    checkpoint: Union[str, Path, Checkpoint], backend: Optional[str] = None, **config_overrides
):
    """A single-chunk GriffinModel for the current parallel state, weights loaded.
    `checkpoint`: a checkpoint or save directory, or one already opened (record.open_checkpoint)
    by a caller that needs its directory too."""
    from ..model import GriffinModel
    from ..runtime import ensure_initialized

    ensure_initialized(seed=None)  # the weights are the checkpoint's
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = open_checkpoint(checkpoint)
    record = checkpoint.record
    backend = backend or record.get("backend", "local")
    from .full_state import WEIGHTS_FROM_CHECKPOINT

    overrides = {
        "use_cpu_initialization": not torch.cuda.is_available(),
        **WEIGHTS_FROM_CHECKPOINT,
        **config_overrides,
    }
    config = config_from_record(record, **overrides)
    model = GriffinModel(config, backend=backend)
    _load_opened(model, checkpoint)
    return model


__all__ = [
    "build_model_from_checkpoint",
    "load_model_checkpoint",
    "load_model_state",
    "model_sharded_state_dict",
    "save_model_checkpoint",
]
