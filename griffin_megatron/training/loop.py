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
from ..config import GriffinConfig
from ..errors import CheckpointError
from ..modules.rglru import warm_up_kernels
from ..parallel import (
    attach_to_schedule,
    build_model_chunks,
    build_optimizer,
    build_scheduler,
    default_ddp_config,
)
from ..run_config import RunConfig
from . import data, default_run, setup
from .logging import TrainingLogger
from .signals import ExitSignalHandler
from .trainer import Trainer, optimizer_config


@dataclass
class TrainResult:
    iteration: int
    first_validation_loss: Optional[float]
    last_validation_loss: Optional[float]
    checkpoint: Optional[Path]
    save: Optional[str]  # the run's save directory (--save, or the fresh one it chose)
    skipped_iterations: int
    stopped_by_signal: bool
    is_reporter: bool  # rank 0, which prints the summary


def pretrain(run: RunConfig, checked_config: GriffinConfig) -> TrainResult:
    """Train as the run's (finalised) settings say, with the GriffinConfig its options were
    checked with (training.arguments.finalize_arguments). Every rank calls this."""
    # Megatron's schedules, optimizer and checkpointing ask for CUDA in literals; on a CPU the
    # whole run answers them there.
    with compat.cuda_requests_on_cpu():
        return _pretrain(run, checked_config)


def _pretrain(run: RunConfig, checked_config: GriffinConfig) -> TrainResult:
    parallel, batch = run.parallel, run.batch
    save_directory.check_save_directory(run.checkpoint.save, run.checkpoint.load)
    # Bad data and model settings fail before any process group exists (all ranks see the same).
    if run.data.data_path is not None:
        tokenizer = setup.checked_data(run.data.data_path, run.data.split, run.data.tokenizer)
        config = setup.model_config(checked_config, run, tokenizer)
    # Model chunks per pipeline rank: the config derived it from --num-layers-per-virtual-
    # pipeline-stage (None without interleaving, which needs more than one stage).
    interleaved = parallel.pipeline_model_parallel_size > 1
    context_parallel.ensure_initialized(
        parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size,
        checked_config.virtual_pipeline_model_parallel_size if interleaved else None,
        context_parallel_size=parallel.context_parallel_size, seed=batch.seed,
    )
    if run.data.data_path is None:
        run = run.replace("data", data_path=[setup.rank0_first(default_run.prepare_corpus)])
        tokenizer = setup.checked_data(run.data.data_path, run.data.split, run.data.tokenizer)
        config = setup.model_config(checked_config, run, tokenizer)
    run = run.replace("checkpoint", save=setup.agreed_save_directory(run.checkpoint.save,
                                                                     run.checkpoint.no_save))
    lock = save_directory.lock_save_directory(run.checkpoint.save)
    init_num_microbatches_calculator(
        dist.get_rank(), None, batch.global_batch_size, batch.micro_batch_size,
        run.data_parallel_size(dist.get_world_size()),
    )
    try:
        distributed_optimizer = parallel.use_distributed_optimizer
        chunks = build_model_chunks(
            config, run.model.backend,
            ddp_config=default_ddp_config(use_distributed_optimizer=distributed_optimizer),
        )
        optimizer = build_optimizer(chunks, optimizer_config(batch, distributed_optimizer))
        # Schedule lengths in samples, as Megatron-LM counts them.
        scheduler = build_scheduler(
            optimizer,
            max_lr=batch.lr,
            min_lr=batch.min_lr,
            warmup_steps=batch.lr_warmup_iters * batch.global_batch_size,
            decay_steps=(batch.lr_decay_iters or batch.train_iters) * batch.global_batch_size,
            decay_style=batch.lr_decay_style,
            weight_decay=batch.weight_decay,
            override_from_checkpoint=run.checkpoint.override_opt_param_scheduler,
        )
        attach_to_schedule(config, chunks, optimizer)
        # Compile and tune the RG-LRU kernels now: a step never times kernels (no-op on a CPU).
        warm_up_kernels(chunks, batch.micro_batch_size, run.model.seq_length)
        trainer = Trainer(run, chunks, optimizer, scheduler)
        return _train(run, trainer, tokenizer, config)
    finally:
        destroy_num_microbatches_calculator()
        if lock is not None:
            lock.release()


def _optimizer_kind(run: RunConfig) -> dict:
    return training_state.optimizer_settings(run.parallel.use_distributed_optimizer,
                                             run.batch.bf16)


def _resume(run: RunConfig, trainer: Trainer) -> str:
    checkpoint = run.checkpoint
    if save_directory.nothing_to_resume(checkpoint.load, checkpoint.save):
        return f"no checkpoint in {checkpoint.load} yet: starting from scratch"
    restored = training_state.load_training_checkpoint(
        checkpoint.load, trainer.chunks, trainer.optimizer, trainer.scheduler,
        finetune=checkpoint.finetune, optimizer_kind=_optimizer_kind(run),
        schedule_settled=(checkpoint.override_opt_param_scheduler
                          or checkpoint.use_checkpoint_opt_param_scheduler),
        hashes=not checkpoint.no_checkpoint_hashes,
    )
    trainer.iteration = restored["iteration"]
    trainer.consumed_samples = restored["consumed_samples"]
    train_iters = run.batch.train_iters
    if trainer.iteration >= train_iters:
        raise CheckpointError(
            f"checkpoint {restored['directory']} is at iteration {trainer.iteration}, not below "
            f"--train-iters={train_iters}; raise --train-iters and pass "
            "--override-opt-param-scheduler (the schedule then spans the new length) to train "
            "further."
        )
    if trainer.iteration == 0:
        return f"initialised the weights from {restored['directory']}"
    return (f"resumed from {restored['directory']} at iteration {trainer.iteration} "
            f"({trainer.consumed_samples} samples consumed)"
            + ("" if restored["rng"] else "; random states start from --seed (another layout)"))


def _train(run: RunConfig, trainer: Trainer, tokenizer, config) -> TrainResult:
    batch, checkpoint = run.batch, run.checkpoint
    resumed = _resume(run, trainer) if checkpoint.load else None
    datasets = data.build_datasets(
        run.data.data_path, run.data.split, batch.seed, run.data.data_cache_path,
        run.data.eod_mask_loss,
        data.dataset_sizes(batch.train_iters, run.evaluation.eval_iters, batch.global_batch_size),
        tokenizer, run.model.seq_length,
    )
    iterators = data.build_data_iterators(datasets, trainer.consumed_samples, len(trainer.chunks),
                                          batch.micro_batch_size, run.data.num_workers)
    rank0 = dist.get_rank() == 0
    logger = TrainingLogger(run, setup.throughput(run, config), trainer.iteration, rank0)
    if resumed:
        logger.print(resumed)
    logger.print(setup.banner(run, config, trainer.chunks))

    first_val = last_val = saved = None
    stop = False
    with ExitSignalHandler() as signals:
        if trainer.iteration == 0:
            first_val = last_val = trainer.evaluate(iterators.validation())
            if first_val is not None:
                logger.validation(0, first_val)
        while trainer.iteration < batch.train_iters and not stop:
            loss, grad_norm, skipped = trainer.train_step(iterators.train)
            if skipped:
                what = f"lm loss is {loss}" if not math.isfinite(loss) else "a gradient is not finite"
                logger.print(f"iteration {trainer.iteration}: {what}; skipped the optimizer step")
            logger.step(trainer.iteration, loss, grad_norm, trainer.optimizer.param_groups[0]["lr"],
                        skipped, trainer.consumed_samples)
            done = trainer.iteration == batch.train_iters
            with logger.untimed():
                if trainer.iteration % run.evaluation.eval_interval == 0 or done:
                    last_val = trainer.evaluate(iterators.validation())
                    if last_val is not None:
                        first_val = last_val if first_val is None else first_val
                        logger.validation(trainer.iteration, last_val)
                stop = signals.received_anywhere()
                interval = checkpoint.save_interval
                periodic = interval and trainer.iteration % interval == 0
                if checkpoint.save and (periodic or done or stop):
                    saved = training_state.save_training_checkpoint(
                        checkpoint.save, trainer.chunks, trainer.optimizer, trainer.scheduler,
                        trainer.iteration, trainer.consumed_samples, tokenizer.path.parent,
                        backend=run.model.backend, optimizer_kind=_optimizer_kind(run),
                        hashes=not checkpoint.no_checkpoint_hashes,
                    )
                    logger.print(f"saved checkpoint {saved}")
        if stop:
            logger.print(f"received {signals.name}: stopped after iteration {trainer.iteration}"
                         + (" (saved)" if checkpoint.save else ""))
    logger.close()
    return TrainResult(trainer.iteration, first_val, last_val, saved, checkpoint.save,
                       logger.total_skipped,
                       stopped_by_signal=stop, is_reporter=rank0)
