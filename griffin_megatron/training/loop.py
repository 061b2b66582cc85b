"""The pretraining driver: Megatron-Core's parts put together the way Megatron-LM's `pretrain`
does, for one CPU process, several over gloo, or many GPUs over NCCL (torchrun).

    process groups (parallel_state)      context_parallel.ensure_initialized
    model chunks, DDP, Float16Module     parallel.build_model_chunks
    optimizer (distributed or not)       parallel.build_optimizer (megatron.core.optimizer)
    LR schedule                          parallel.build_scheduler (OptimizerParamScheduler)
    micro-batches                        megatron.core.num_microbatches_calculator
    forward/backward (PP, VPP)           training.trainer (get_forward_backward_func)
    data                                 training.data (BlendedMegatronDatasetBuilder, GPTDataset)
    checkpoints                          checkpoint.training_state (checkpoint.distributed)
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch.distributed as dist
from megatron.core.num_microbatches_calculator import (
    destroy_num_microbatches_calculator,
    init_num_microbatches_calculator,
)

from .. import compat, context_parallel
from ..checkpoint import save_directory, training_state
from ..errors import CheckpointError
from ..modules.rglru import warm_up_kernels
from ..parallel import (
    attach_to_schedule,
    build_model_chunks,
    build_optimizer,
    build_scheduler,
    default_ddp_config,
)
from . import data, default_run, setup
from .arguments import data_parallel_size
from .logging import TrainingLogger
from .model_config import virtual_pipeline_size
from .signals import ExitSignalHandler
from .trainer import Trainer, optimizer_config


@dataclass
class TrainResult:
    iteration: int
    first_validation_loss: Optional[float]
    last_validation_loss: Optional[float]
    checkpoint: Optional[Path]
    skipped_iterations: int
    stopped_by_signal: bool
    is_reporter: bool  # rank 0, which prints the summary


def pretrain(args: argparse.Namespace) -> TrainResult:
    """Train as the (already finalised) arguments say. Every rank calls this."""
    # Megatron's schedules, optimizer and checkpointing ask for CUDA in literals; on a CPU the
    # whole run answers them there.
    with compat.cuda_requests_on_cpu():
        return _pretrain(args)


def _pretrain(args: argparse.Namespace) -> TrainResult:
    save_directory.check_save_directory(args)
    # Bad data and model settings fail before any process group exists (all ranks see the same).
    if args.data_path is not None:
        tokenizer = setup.checked_data(args)
        config = setup.model_config(args, tokenizer)
    context_parallel.ensure_initialized(
        args.tensor_model_parallel_size, args.pipeline_model_parallel_size,
        virtual_pipeline_size(args),
        context_parallel_size=args.context_parallel_size, seed=args.seed,
    )
    if args.data_path is None:
        args.data_path = [setup.rank0_first(default_run.prepare_corpus)]
        tokenizer = setup.checked_data(args)
        config = setup.model_config(args, tokenizer)
    args.save = setup.agreed_save_directory(args)
    lock = save_directory.lock_save_directory(args)
    init_num_microbatches_calculator(
        dist.get_rank(), None, args.global_batch_size, args.micro_batch_size,
        data_parallel_size(args, dist.get_world_size()),
    )
    try:
        chunks = build_model_chunks(
            config, args.backend,
            ddp_config=default_ddp_config(use_distributed_optimizer=args.use_distributed_optimizer),
        )
        optimizer = build_optimizer(chunks, optimizer_config(args))
        # Schedule lengths in samples, as Megatron-LM counts them.
        scheduler = build_scheduler(
            optimizer,
            max_lr=args.lr,
            min_lr=args.min_lr,
            warmup_steps=args.lr_warmup_iters * args.global_batch_size,
            decay_steps=(args.lr_decay_iters or args.train_iters) * args.global_batch_size,
            decay_style=args.lr_decay_style,
            weight_decay=args.weight_decay,
            override_from_checkpoint=args.override_opt_param_scheduler,
        )
        attach_to_schedule(config, chunks, optimizer)
        # Compile and tune the RG-LRU kernels now: a step never times kernels (no-op on a CPU).
        warm_up_kernels(chunks, args.micro_batch_size, args.seq_length)
        trainer = Trainer(args, chunks, optimizer, scheduler)
        return _train(args, trainer, tokenizer, config)
    finally:
        destroy_num_microbatches_calculator()
        if lock is not None:
            lock.release()


def _resume(args, trainer: Trainer) -> str:
    if save_directory.nothing_to_resume(args):
        return f"no checkpoint in {args.load} yet: starting from scratch"
    restored = training_state.load_training_checkpoint(
        args, trainer.chunks, trainer.optimizer, trainer.scheduler
    )
    trainer.iteration = restored["iteration"]
    trainer.consumed_samples = restored["consumed_samples"]
    if trainer.iteration >= args.train_iters:
        raise CheckpointError(
            f"checkpoint {restored['directory']} is at iteration {trainer.iteration}, not below "
            f"--train-iters={args.train_iters}; raise --train-iters and pass "
            "--override-opt-param-scheduler (the schedule then spans the new length) to train "
            "further."
        )
    if trainer.iteration == 0:
        return f"initialised the weights from {restored['directory']}"
    return (f"resumed from {restored['directory']} at iteration {trainer.iteration} "
            f"({trainer.consumed_samples} samples consumed)"
            + ("" if restored["rng"] else "; random states start from --seed (another layout)"))


def _train(args, trainer: Trainer, tokenizer, config) -> TrainResult:
    resumed = _resume(args, trainer) if args.load else None
    datasets = data.build_datasets(args, tokenizer, args.seq_length)
    iterators = data.build_data_iterators(args, datasets, trainer.consumed_samples,
                                          len(trainer.chunks))
    rank0 = dist.get_rank() == 0
    logger = TrainingLogger(args, setup.throughput(args, config), trainer.iteration, rank0)
    if resumed:
        logger.print(resumed)
    logger.print(setup.banner(args, config, trainer.chunks))

    first_val = last_val = saved = None
    stop = False
    with ExitSignalHandler() as signals:
        if trainer.iteration == 0:
            first_val = last_val = trainer.evaluate(iterators.validation())
            if first_val is not None:
                logger.validation(0, first_val)
        while trainer.iteration < args.train_iters and not stop:
            loss, grad_norm, skipped = trainer.train_step(iterators.train)
            if skipped:
                what = f"lm loss is {loss}" if not math.isfinite(loss) else "a gradient is not finite"
                logger.print(f"iteration {trainer.iteration}: {what}; skipped the optimizer step")
            logger.step(trainer.iteration, loss, grad_norm, trainer.optimizer.param_groups[0]["lr"],
                        skipped, trainer.consumed_samples)
            done = trainer.iteration == args.train_iters
            with logger.untimed():
                if trainer.iteration % args.eval_interval == 0 or done:
                    last_val = trainer.evaluate(iterators.validation())
                    if last_val is not None:
                        first_val = last_val if first_val is None else first_val
                        logger.validation(trainer.iteration, last_val)
                stop = signals.received_anywhere()
                periodic = args.save_interval and trainer.iteration % args.save_interval == 0
                if args.save and (periodic or done or stop):
                    saved = training_state.save_training_checkpoint(
                        args, trainer.chunks, trainer.optimizer, trainer.scheduler,
                        trainer.iteration, trainer.consumed_samples, tokenizer.path.parent,
                    )
                    logger.print(f"saved checkpoint {saved}")
        if stop:
            logger.print(f"received {signals.name}: stopped after iteration {trainer.iteration}"
                         + (" (saved)" if args.save else ""))
    logger.close()
    return TrainResult(trainer.iteration, first_val, last_val, saved, logger.total_skipped,
                       stopped_by_signal=stop, is_reporter=rank0)
