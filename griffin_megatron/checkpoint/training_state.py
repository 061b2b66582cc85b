"""A training run's checkpoints in Megatron-LM's layout, through checkpoint.distributed's save/load:

    <save>/iter_0000100/                  model, optimizer, LR schedule, RNG states, train state
    <save>/iter_0000100/griffin_model.json   architecture record (+ iteration, consumed samples)
    <save>/iter_0000100/tokenizer.json       the run's tokenizer
    <save>/latest_checkpointed_iteration.txt written only after a complete save

Every iteration directory is written under a temporary name and renamed into place, and the
`latest` pointer moves after that, so a crash during a save leaves the previous checkpoint as the
one `--load` finds. RNG states are per (pipeline, tensor) rank; they are restored when the layout
is the one they were saved at (a resharded resume starts those generators from the seed).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import List, Optional

import numpy
import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from ..errors import CheckpointError
from .record import open_checkpoint

RNG_KEY = "rng_state"
TRAIN_STATE_KEY = "train_state"
SCHEDULER_RECORD = "scheduler"  # the LR schedule's settings, compared on resume
OPTIMIZER_RECORD = "optimizer"  # the optimizer-state layout, which a resume must match

# OptimizerParamScheduler settings and the options that set them (Megatron-LM's names).
SCHEDULE_OPTIONS = {
    "max_lr": "--lr",
    "min_lr": "--min-lr",
    "lr_warmup_steps": "--lr-warmup-iters",
    "lr_decay_steps": "--lr-decay-iters or --train-iters",
    "lr_decay_style": "--lr-decay-style",
    "start_wd": "--weight-decay",
    "end_wd": "--weight-decay",
    "wd_incr_steps": "--lr-decay-iters or --train-iters",
    "wd_incr_style": "--weight-decay",
}


def _layout() -> dict:
    return {
        "tensor_model_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_model_parallel_size": parallel_state.get_pipeline_model_parallel_world_size(),
    }


def _rng_state() -> dict:
    state = {
        "random": random.getstate(),
        "numpy": numpy.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["random"])
    numpy.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _rng_sharded_object(state: Optional[dict]) -> ShardedObject:
    """One object per (pipeline, tensor) rank, replicated over data-parallel ranks."""
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    tp = parallel_state.get_tensor_model_parallel_world_size()
    return ShardedObject(
        RNG_KEY, state, (pp, tp),
        (parallel_state.get_pipeline_model_parallel_rank(),
         parallel_state.get_tensor_model_parallel_rank()),
        replica_id=parallel_state.get_data_parallel_rank(with_context_parallel=True),
    )


def save_training_checkpoint(save: str, chunks: List, optimizer, scheduler, iteration: int,
                             consumed_samples: int, tokenizer_dir: Optional[Path], *,
                             backend: str, optimizer_kind: dict, hashes: bool) -> Path:
    """Save this iteration under <save>/iter_N and point `latest` at it (all ranks).
    optimizer_kind: optimizer_settings(...) of the run; hashes: record each file's SHA-256."""
    from .distributed import save_checkpoint

    train_state = {"iteration": iteration, "consumed_train_samples": consumed_samples}
    return save_checkpoint(
        save, chunks, optimizer, scheduler,
        iteration=iteration,
        backend=backend,
        # The directory is this run's (check_save_directory): an iteration written before a
        # crash, after the `latest` it resumed from, is written again.
        overwrite=True,
        tokenizer_dir=tokenizer_dir,
        extra_record={"train_state": train_state, "layout": _layout(),
                      SCHEDULER_RECORD: _schedule_settings(scheduler),
                      OPTIMIZER_RECORD: optimizer_kind},
        extra_state={RNG_KEY: _rng_sharded_object(_rng_state()), TRAIN_STATE_KEY: train_state},
        hashes=hashes,
    )


def _schedule_settings(scheduler) -> dict:
    state = scheduler.state_dict()
    return {key: state[key] for key in SCHEDULE_OPTIONS}


def optimizer_settings(distributed: bool, bf16: bool) -> dict:
    """The optimizer's kind as a checkpoint records it (--use-distributed-optimizer, --bf16)."""
    return {"distributed": bool(distributed), "bf16": bool(bf16)}


def _describe_optimizer(settings: dict) -> str:
    kind = "the distributed optimizer" if settings["distributed"] else "the plain optimizer"
    return f"{kind} with {'bf16 parameters and fp32 main copies' if settings['bf16'] else 'fp32 parameters'}"


def check_optimizer(wanted: dict, record: dict, directory: Path) -> None:
    """The optimizer's saved state is keyed by its kind (the distributed optimizer shards its
    state as `param` / `exp_avg` per parameter range; bf16 adds fp32 main copies), so a resume
    must use the kind that wrote it; Megatron itself only fails with a KeyError on a state key.
    `wanted`: this run's optimizer_settings."""
    saved = record.get(OPTIMIZER_RECORD)
    if saved is None or saved == wanted:
        return
    flags = " and ".join(f"{'with' if saved[key] else 'without'} {flag}" for key, flag in
                         (("distributed", "--use-distributed-optimizer"), ("bf16", "--bf16")))
    raise CheckpointError(
        f"checkpoint {directory} holds the state of {_describe_optimizer(saved)}, but this run "
        f"uses {_describe_optimizer(wanted)}; resume {flags}, as the checkpoint was written, "
        "or pass --finetune to start a new run from its weights only."
    )


def check_schedule(record: dict, scheduler, directory: Path, settled: bool) -> None:
    """Megatron-LM's rule for a resume whose LR-schedule options differ from the checkpoint's:
    refuse unless --override-opt-param-scheduler (this run's options win) or
    --use-checkpoint-opt-param-scheduler (the checkpoint's win) says which to follow
    (`settled`: either was given)."""
    saved = record.get(SCHEDULER_RECORD)
    if saved is None or settled:
        return
    wanted = _schedule_settings(scheduler)
    changed = [key for key in SCHEDULE_OPTIONS if saved.get(key) != wanted[key]]
    if changed:
        key = changed[0]
        raise CheckpointError(
            f"this run's learning-rate schedule differs from that of checkpoint {directory} "
            f"({key} {wanted[key]} here, {saved.get(key)} there; set by {SCHEDULE_OPTIONS[key]}); "
            "pass --override-opt-param-scheduler to follow this run's options from the "
            "checkpoint's step on, or --use-checkpoint-opt-param-scheduler to keep the "
            "checkpoint's schedule."
        )


def load_training_checkpoint(load: str, chunks: List, optimizer, scheduler, *, finetune: bool,
                             optimizer_kind: dict, schedule_settled: bool,
                             hashes: bool) -> dict:
    """Restore a checkpoint into this run; returns {"iteration", "consumed_samples", "directory",
    "rng"}. With --finetune, or from a model-only checkpoint (e.g. converted from HF), only the
    weights are taken and training starts at iteration 0. optimizer_kind: this run's
    optimizer_settings; schedule_settled: --override-opt-param-scheduler or
    --use-checkpoint-opt-param-scheduler was given; hashes: check each file's SHA-256."""
    from .distributed import load_checkpoint

    checkpoint = open_checkpoint(Path(load).expanduser())
    directory, record = checkpoint.directory, checkpoint.record
    if finetune or not record.get("has_optimizer"):
        load_checkpoint(directory, chunks, verify_hashes=hashes)
        return {"iteration": 0, "consumed_samples": 0, "directory": directory, "rng": False}
    check_optimizer(optimizer_kind, record, directory)
    check_schedule(record, scheduler, directory, schedule_settled)
    same_layout = record.get("layout") == _layout()
    extra = {TRAIN_STATE_KEY: None}
    if same_layout:
        extra[RNG_KEY] = _rng_sharded_object(None)
    loaded = load_checkpoint(directory, chunks, optimizer, scheduler, extra_state=extra,
                             verify_hashes=hashes)
    state = loaded["extra_state"][TRAIN_STATE_KEY]
    if same_layout:
        _set_rng_state(loaded["extra_state"][RNG_KEY])
    return {
        "iteration": state["iteration"],
        "consumed_samples": state["consumed_train_samples"],
        "directory": directory,
        "rng": same_layout,
    }
