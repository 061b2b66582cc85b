"""Training checkpoints: model, Megatron optimizer state and LR schedule, reshardable.

One torch_dist checkpoint (megatron.core.dist_checkpointing) laid out as Megatron-LM lays it
out: `model` (or `model0`, `model1`, ... per virtual pipeline chunk), `optimizer`,
`opt_param_scheduler`, `iteration`, plus our `griffin_model.json` record. Every tensor is keyed
by its global name (layers by global number) and declares its sharding, and the optimizer
state is keyed like the parameter it belongs to (Megatron's `optimizer.sharded_state_dict`; the
distributed optimizer in its fully reshardable format), so a checkpoint saved at one TP/PP/VPP/DP
layout resumes at any other. Model-only readers (`checkpoint.model.load_model_checkpoint`,
conversion to HF) read these checkpoints too.

With `iteration`, saves go to `<directory>/iter_0000010/` and
`<directory>/latest_checkpointed_iteration.txt` is updated after the save completes.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

from megatron.core import dist_checkpointing
from megatron.core.optimizer import MegatronOptimizer
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import unwrap_model

from .. import compat
from ..errors import CheckpointError
from .record import (
    check_architecture,
    iteration_dir,
    mark_latest_iteration,
    model_record,
    resolve_checkpoint_dir,
    verify_checkpoint,
)
from .sharded_save import save_sharded_atomically


# How the distributed optimizer lays out its state: by parameter, in model space, so that it
# reshards across tensor, pipeline and data parallel sizes.
OPTIMIZER_SHARDING_METADATA = {
    "distrib_optim_sharding_type": "fully_reshardable",
    "chained_optim_avoid_prefix": True,
}
MODEL_KEY = "model"
OPTIMIZER_KEY = "optimizer"
SCHEDULER_KEY = "opt_param_scheduler"
ITERATION_KEY = "iteration"


def _model_keys(count: int) -> List[str]:
    return [MODEL_KEY] if count == 1 else [f"{MODEL_KEY}{i}" for i in range(count)]


def training_sharded_state_dict(
    chunks: List[MegatronModule],
    optimizer: Optional[MegatronOptimizer] = None,
    scheduler: Optional[OptimizerParamScheduler] = None,
    iteration: Optional[int] = None,
    *,
    is_loading: bool = False,
) -> dict:
    """The sharded state dict of a training checkpoint (to save, or to load into)."""
    models = unwrap_model(list(chunks))
    state = {
        key: model.sharded_state_dict(metadata=dict(OPTIMIZER_SHARDING_METADATA))
        for key, model in zip(_model_keys(len(models)), models)
    }
    if optimizer is not None:
        state[OPTIMIZER_KEY] = optimizer.sharded_state_dict(
            state, is_loading=is_loading, metadata=dict(OPTIMIZER_SHARDING_METADATA)
        )
    if scheduler is not None:
        state[SCHEDULER_KEY] = scheduler.state_dict()
    if iteration is not None:
        state[ITERATION_KEY] = iteration
    return state


def _distributed_optimizers(optimizer: MegatronOptimizer) -> list:
    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    return [o for o in inner if isinstance(o, DistributedOptimizer)]


def _has_empty_distributed_optimizer(optimizer: MegatronOptimizer) -> bool:
    return any(not o.optimizer.state for o in _distributed_optimizers(optimizer))


def _materialize_optimizer_state(optimizer: MegatronOptimizer) -> None:
    """A fresh DistributedOptimizer has no Adam state tensors to load into (and its
    state_dict() needs them); Megatron's own dummy step creates them. The step changes no weight
    that the checkpoint does not overwrite (zero gradients; weight decay is undone by loading the
    model weights, which always happens together)."""
    for inner in _distributed_optimizers(optimizer):
        if not inner.optimizer.state:
            inner._init_optimizer_states_with_dummy_values()


def _checked_extra_state(extra_state: Optional[dict], state: dict) -> dict:
    clashes = sorted(set(extra_state or {}) & set(state))
    if clashes:
        raise ValueError(
            f"extra checkpoint entries {clashes} clash with the model/optimizer entries; "
            "rename them."
        )
    return dict(extra_state or {})


def _sync_overlapped_param_gather(chunks: List[MegatronModule]) -> None:
    """With DDP's overlapped parameter all-gather the distributed optimizer's updates reach the
    weights only at the next forward pass; gather them now so the saved weights are current (as
    Megatron-LM does before saving)."""
    for chunk in chunks:
        ddp_config = getattr(chunk, "ddp_config", None)
        if ddp_config is not None and ddp_config.overlap_param_gather:
            chunk.start_param_sync(force_sync=True)


def save_checkpoint(
    directory: Union[str, Path],
    chunks: List[MegatronModule],
    optimizer: Optional[MegatronOptimizer] = None,
    scheduler: Optional[OptimizerParamScheduler] = None,
    *,
    iteration: Optional[int] = None,
    backend: str = "local",
    overwrite: bool = False,
    tokenizer_dir: Optional[Union[str, Path]] = None,
    extra_record: Optional[dict] = None,
    extra_state: Optional[dict] = None,
    hashes: bool = True,
) -> Path:
    """Save model chunks (+ optimizer and scheduler state) atomically; all ranks call this.

    extra_state: more entries of the checkpoint (sharded objects such as per-rank RNG states,
    or plain values such as a training loop's counters), saved under their own keys.
    hashes: record each file's SHA-256 beside its size (see `checkpoint.integrity`).

    Returns the checkpoint directory (`<directory>/iter_<iteration in 7 digits>` when
    `iteration` is given).
    """
    if optimizer is not None and _has_empty_distributed_optimizer(optimizer):
        raise CheckpointError(
            "the distributed optimizer has taken no step yet, so it has no state to save; save "
            "after the first optimizer step, or save without the optimizer."
        )
    _sync_overlapped_param_gather(chunks)
    target = iteration_dir(directory, iteration) if iteration is not None else Path(directory)
    config = unwrap_model(chunks[0]).config
    record = model_record(
        config,
        backend,
        iteration=iteration,
        has_optimizer=optimizer is not None,
        has_scheduler=scheduler is not None,
        **(extra_record or {}),
    )
    # The distributed optimizer's state is gathered while its sharded state dict is built.
    with compat.distributed_optimizer_fixes(), compat.cuda_requests_on_cpu():
        state = training_sharded_state_dict(chunks, optimizer, scheduler, iteration)
        state.update(_checked_extra_state(extra_state, state))
        save_sharded_atomically(state, target, record, overwrite=overwrite,
                                tokenizer_dir=tokenizer_dir, hashes=hashes)
    if iteration is not None:
        mark_latest_iteration(directory, iteration)
    return target


def load_checkpoint(
    directory: Union[str, Path],
    chunks: List[MegatronModule],
    optimizer: Optional[MegatronOptimizer] = None,
    scheduler: Optional[OptimizerParamScheduler] = None,
    *,
    extra_state: Optional[dict] = None,
    verify_hashes: bool = True,
) -> dict:
    """Load a checkpoint saved at any parallel layout into this layout (in place).

    `directory` is a checkpoint, or a save directory with `latest_checkpointed_iteration.txt`.
    Pass an optimizer / scheduler to restore theirs too (the checkpoint must hold them), and
    the extra entries to read back as passed to `save_checkpoint` (sharded objects with data
    None as templates; plain values are read back whatever the template holds).
    Returns {"directory": the checkpoint read, "iteration": the saved iteration or None,
    "extra_state": {key: loaded value}}.
    """
    directory = resolve_checkpoint_dir(directory)
    record = check_architecture(directory, unwrap_model(chunks[0]).config)
    for wanted, flag, what in (
        (optimizer, "has_optimizer", "optimizer"),
        (scheduler, "has_scheduler", "learning-rate scheduler"),
    ):
        if wanted is not None and not record.get(flag, False):
            raise CheckpointError(
                f"checkpoint {directory} holds no {what} state (it was saved without one); "
                f"load it without the {what}, or pick a checkpoint saved during training."
            )
    verify_checkpoint(directory, record, hashes=verify_hashes)
    with compat.distributed_optimizer_fixes(), compat.cuda_requests_on_cpu():
        if optimizer is not None:
            _materialize_optimizer_state(optimizer)
        request = training_sharded_state_dict(chunks, optimizer, scheduler, is_loading=True)
        request.update(_checked_extra_state(extra_state, request))
        loaded = dist_checkpointing.load(
            request, str(directory), **compat.common_state.load_kwargs(directory))
        for key, model in zip(_model_keys(len(chunks)), unwrap_model(list(chunks))):
            model.load_state_dict(loaded[key], strict=False)
        if optimizer is not None:
            optimizer.load_state_dict(loaded[OPTIMIZER_KEY])
    if scheduler is not None:
        scheduler.load_state_dict(loaded[SCHEDULER_KEY])
    extra = {key: loaded.get(key) for key in (extra_state or {})}
    return {"directory": directory, "iteration": loaded.get(ITERATION_KEY), "extra_state": extra}
