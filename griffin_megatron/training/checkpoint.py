"""Training checkpoints in Megatron-LM's layout, through griffin_megatron.parallel's save/load:

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

import argparse
import os
import random
import time
from pathlib import Path
from typing import List, Optional

import numpy
import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from ..checkpointing import LATEST_FILE, MODEL_RECORD, read_model_record, resolve_checkpoint_dir
from .arguments import same_directory

RNG_KEY = "rng_state"
TRAIN_STATE_KEY = "train_state"
# Tests set this to an iteration number: its save stops after writing its shards (before the
# rename and the `latest` update), writes a marker file and waits to be killed.
PAUSE_IN_SAVE_ENV = "GRIFFIN_MEGATRON_TEST_PAUSE_IN_SAVE"
PAUSED_MARKER = "PAUSED_IN_SAVE"


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


def check_save_directory(args: argparse.Namespace) -> None:
    """Never write over another run's checkpoints: a --save directory that already has a
    `latest` pointer is only used to resume that run (--load pointing at it)."""
    if args.save is None:
        return
    save = Path(args.save).expanduser()
    if save.exists() and not save.is_dir():
        raise FileExistsError(f"--save {save} is a file; pass a directory for the checkpoints.")
    held = sorted(save.glob("iter_*")) + sorted(save.glob(LATEST_FILE)) if save.is_dir() else []
    resuming = same_directory(args.load, args.save)
    if held and not resuming:
        raise FileExistsError(
            f"--save {save} already holds checkpoints ({held[-1].name}); pass --load {save} to "
            "resume that run, or choose a new --save directory."
        )


def _pause_hook(iteration: int):
    wanted = os.environ.get(PAUSE_IN_SAVE_ENV)
    if wanted is None or int(wanted) != iteration:
        return None

    def pause(staging: Path) -> None:
        if torch.distributed.get_rank() == 0:
            (staging.parent / PAUSED_MARKER).write_text(f"{staging}\n")
        while True:
            time.sleep(1)

    return pause


def save_training_checkpoint(args, chunks: List, optimizer, scheduler, iteration: int,
                             consumed_samples: int, tokenizer_dir: Optional[Path]) -> Path:
    from ..parallel import save_checkpoint

    train_state = {"iteration": iteration, "consumed_train_samples": consumed_samples}
    return save_checkpoint(
        args.save, chunks, optimizer, scheduler,
        iteration=iteration,
        backend=args.backend,
        # The directory is this run's (check_save_directory): an iteration written before a
        # crash, after the `latest` it resumed from, is written again.
        overwrite=True,
        tokenizer_dir=tokenizer_dir,
        extra_record={"train_state": train_state, "layout": _layout()},
        extra_state={RNG_KEY: _rng_sharded_object(_rng_state()), TRAIN_STATE_KEY: train_state},
        after_write=_pause_hook(iteration),
    )


def nothing_to_resume(args) -> bool:
    """`--load` names this run's own --save directory, which holds no checkpoint yet (the first
    launch of a job that always passes `--save DIR --load DIR`)."""
    load = Path(args.load).expanduser()
    return same_directory(args.load, args.save) and not (
        (load / LATEST_FILE).is_file() or (load / MODEL_RECORD).is_file()
    )


def load_training_checkpoint(args, chunks: List, optimizer, scheduler) -> dict:
    """Restore a checkpoint into this run; returns {"iteration", "consumed_samples", "directory",
    "rng"}. With --finetune, or from a model-only checkpoint (e.g. converted from HF), only the
    weights are taken and training starts at iteration 0."""
    from ..parallel import load_checkpoint

    directory = resolve_checkpoint_dir(Path(args.load).expanduser())
    record = read_model_record(directory)
    if args.finetune or not record.get("has_optimizer"):
        load_checkpoint(directory, chunks)
        return {"iteration": 0, "consumed_samples": 0, "directory": directory, "rng": False}
    same_layout = record.get("layout") == _layout()
    extra = {TRAIN_STATE_KEY: None}
    if same_layout:
        extra[RNG_KEY] = _rng_sharded_object(None)
    loaded = load_checkpoint(directory, chunks, optimizer, scheduler, extra_state=extra)
    state = loaded["extra_state"][TRAIN_STATE_KEY]
    if same_layout:
        _set_rng_state(loaded["extra_state"][RNG_KEY])
    return {
        "iteration": state["iteration"],
        "consumed_samples": state["consumed_train_samples"],
        "directory": directory,
        "rng": same_layout,
    }
