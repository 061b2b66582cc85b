"""The pretraining driver: Megatron-Core's parts put together the way Megatron-LM's `pretrain`
does, for one CPU process, several over gloo, or many GPUs over NCCL (torchrun).

    process groups (parallel_state)      runtime.ensure_initialized
    model chunks, DDP, Float16Module     parallel.build_model_chunks
    optimizer (distributed or not)       parallel.build_optimizer (megatron.core.optimizer)
    LR schedule                          parallel.build_scheduler (OptimizerParamScheduler)
    micro-batches                        megatron.core.num_microbatches_calculator
    forward/backward (PP, VPP)           megatron.core.pipeline_parallel.get_forward_backward_func
    data                                 training.data (BlendedMegatronDatasetBuilder, GPTDataset)
    checkpoints                          training.checkpoint (parallel.save/load_checkpoint)

A step whose gradients hold NaN or inf is reported and skipped (no optimizer update, no LR
step), as Megatron's optimizer does when it finds `found_inf`; the run goes on.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.num_microbatches_calculator import (
    destroy_num_microbatches_calculator,
    get_num_microbatches,
    init_num_microbatches_calculator,
)
from megatron.core.optimizer import OptimizerConfig
from megatron.core.pipeline_parallel import get_forward_backward_func

from .. import runtime
from ..checkpointing import find_tokenizer_dir
from . import checkpoint, data, default_run, faults
from .arguments import data_parallel_size
from .logging import Throughput, TrainingLogger
from .model_config import architecture_from_args, build_model_config, virtual_pipeline_size
from .signals import ExitSignalHandler


@dataclass
class TrainResult:
    iteration: int
    first_validation_loss: Optional[float]
    last_validation_loss: Optional[float]
    checkpoint: Optional[Path]
    skipped_iterations: int
    stopped_by_signal: bool
    is_reporter: bool  # rank 0, which prints the summary


def _is_last_stage_writer() -> bool:
    return parallel_state.is_pipeline_last_stage(ignore_virtual=True) and (
        parallel_state.get_tensor_model_parallel_rank() == 0
    )


def _loss_to_rank0(loss: Optional[float]) -> Optional[float]:
    """The loss lives on the last pipeline stage; rank 0 reports it."""
    value = torch.tensor([float("nan") if loss is None else loss], dtype=torch.float64,
                         device="cuda" if torch.cuda.is_available() else "cpu")
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        source = parallel_state.get_pipeline_model_parallel_last_rank()
        dist.broadcast(value, src=source, group=parallel_state.get_pipeline_model_parallel_group())
    return value.item()


def _checked_data(args):
    """The tokenizer of the run, after checking the datasets exist and match it."""
    prefixes, _ = data.parse_blend(args.data_path)
    data.check_dataset_files(prefixes)
    return data.resolve_tokenizer(prefixes, args.tokenizer)


def _model_config(args, tokenizer):
    vocab = data.padded_vocab_size(tokenizer.vocab_size, args.make_vocab_size_divisible_by,
                                   args.tensor_model_parallel_size)
    config = build_model_config(args, vocab)
    args.seq_length = config.seq_length
    return config


def _rank0_first(build):
    """Run `build` on rank 0 while the others wait, then return its result everywhere."""
    holder = [build() if dist.get_rank() == 0 else None]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _agreed_save_directory(args) -> Optional[str]:
    """--save, or a fresh ./runs/griffin-<time> chosen by rank 0 (never an existing one)."""
    if args.no_save:
        return None
    if args.save is not None:
        return str(Path(args.save).expanduser())

    def fresh() -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        candidate, n = Path("runs") / f"griffin-{stamp}", 1
        while candidate.exists():
            n += 1
            candidate = Path("runs") / f"griffin-{stamp}-{n}"
        return str(candidate)

    return _rank0_first(fresh)


def _grads_are_finite(chunks) -> bool:
    """Whether every gradient of every rank is finite (one all-reduce over all ranks)."""
    from ..parallel import gradients_are_finite

    return gradients_are_finite(chunks)


class Trainer:
    """One rank's model chunks, optimizer and schedule, stepped through Megatron's schedules."""

    def __init__(self, args: argparse.Namespace, chunks, optimizer, scheduler):
        self.args = args
        self.chunks = chunks
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.forward_backward = get_forward_backward_func()
        self.iteration = 0
        self.consumed_samples = 0

    def _run_schedule(self, iterators, forward_only: bool) -> Optional[float]:
        from ..parallel import average_lm_loss, forward_step

        losses = self.forward_backward(
            forward_step_func=forward_step,
            data_iterator=iterators if len(iterators) > 1 else iterators[0],
            model=self.chunks,
            num_microbatches=get_num_microbatches(),
            seq_length=self.args.seq_length,
            micro_batch_size=self.args.micro_batch_size,
            forward_only=forward_only,
        )
        loss = average_lm_loss(losses) if parallel_state.is_pipeline_last_stage(ignore_virtual=True) else None
        return _loss_to_rank0(loss)

    def train_step(self, iterators):
        """One global batch; returns (loss, grad norm, skipped)."""
        for chunk in self.chunks:
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        with faults.injected(self.iteration + 1, self.chunks):
            loss = self._run_schedule(iterators, forward_only=False)
        if not _grads_are_finite(self.chunks):
            return loss, None, True
        success, grad_norm, _ = self.optimizer.step()
        if not success:
            return loss, None, True
        self.scheduler.step(increment=self.args.global_batch_size)
        return loss, grad_norm, False

    @torch.no_grad()
    def evaluate(self, data_iterators) -> Optional[float]:
        iterators = data_iterators.validation()
        if iterators is None:
            return None
        for chunk in self.chunks:
            chunk.eval()
        total = 0.0
        for _ in range(self.args.eval_iters):
            total += self._run_schedule(iterators, forward_only=True)
        for chunk in self.chunks:
            chunk.train()
        return total / self.args.eval_iters


def _optimizer_config(args: argparse.Namespace) -> OptimizerConfig:
    return OptimizerConfig(
        optimizer="adam",
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2,
        adam_eps=args.adam_eps,
        clip_grad=args.clip_grad,
        bf16=args.bf16,
        params_dtype=torch.bfloat16 if args.bf16 else torch.float32,
        use_distributed_optimizer=args.use_distributed_optimizer,
    )


def _throughput(args, config, world: int) -> Throughput:
    from ..flops import griffin_forward_flops, peak_bf16_tflops, training_flops

    flops = training_flops(griffin_forward_flops(config, args.seq_length), args.global_batch_size)
    peak = peak_bf16_tflops(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    return Throughput(args.global_batch_size * args.seq_length, flops, world, peak)


def pretrain(args: argparse.Namespace) -> TrainResult:
    """Train as the (already finalised) arguments say. Every rank calls this."""
    from ..parallel import attach_to_schedule, build_model_chunks, build_optimizer, build_scheduler
    from ..parallel import default_ddp_config

    checkpoint.check_save_directory(args)
    # Bad data and model settings fail before any process group exists (all ranks see the same).
    if args.data_path is not None:
        tokenizer = _checked_data(args)
        config = _model_config(args, tokenizer)
    architecture = architecture_from_args(args)
    runtime.ensure_initialized(
        args.tensor_model_parallel_size, args.pipeline_model_parallel_size,
        virtual_pipeline_size(args, architecture["num_layers"]), seed=args.seed,
    )
    if args.data_path is None:
        args.data_path = [_rank0_first(default_run.prepare_corpus)]
        tokenizer = _checked_data(args)
        config = _model_config(args, tokenizer)
    args.save = _agreed_save_directory(args)
    rank = dist.get_rank()
    world = dist.get_world_size()
    init_num_microbatches_calculator(
        rank, None, args.global_batch_size, args.micro_batch_size, data_parallel_size(args, world)
    )
    try:
        chunks = build_model_chunks(
            config, args.backend,
            ddp_config=default_ddp_config(use_distributed_optimizer=args.use_distributed_optimizer),
        )
        optimizer = build_optimizer(chunks, _optimizer_config(args))
        scheduler = build_scheduler(
            optimizer,
            max_lr=args.lr,
            min_lr=args.min_lr,
            warmup_steps=args.lr_warmup_iters * args.global_batch_size,
            decay_steps=(args.lr_decay_iters or args.train_iters) * args.global_batch_size,
            decay_style=args.lr_decay_style,
            weight_decay=args.weight_decay,
        )
        attach_to_schedule(config, chunks, optimizer)
        trainer = Trainer(args, chunks, optimizer, scheduler)
        return _train(args, trainer, tokenizer, config, rank, world)
    finally:
        destroy_num_microbatches_calculator()


def _train(args, trainer: Trainer, tokenizer, config, rank: int, world: int) -> TrainResult:
    logger = TrainingLogger(args, _throughput(args, config, world), 0, is_writer=rank == 0)
    say = logger.print
    if args.load:
        restored = checkpoint.load_training_checkpoint(
            args, trainer.chunks, trainer.optimizer, trainer.scheduler
        )
        trainer.iteration = restored["iteration"]
        trainer.consumed_samples = restored["consumed_samples"]
        if trainer.iteration == 0:
            say(f"initialised the weights from {restored['directory']}")
        else:
            say(f"resumed from {restored['directory']} at iteration {trainer.iteration} "
                f"({trainer.consumed_samples} samples consumed)"
                + ("" if restored["rng"] else "; random states start from --seed (another layout)"))
    if trainer.iteration >= args.train_iters:
        raise ValueError(
            f"the checkpoint is at iteration {trainer.iteration}, not below --train-iters="
            f"{args.train_iters}; raise --train-iters to train further."
        )
    datasets = data.build_datasets(args, tokenizer, args.seq_length)
    iterators = data.build_data_iterators(args, datasets, trainer.consumed_samples,
                                          len(trainer.chunks))
    tokenizer_dir = tokenizer.path.parent
    if logger.bar is not None:
        logger.bar.n = trainer.iteration
    say(_banner(args, config, world, _parameter_count(trainer.chunks)))

    first_val = last_val = None
    saved: Optional[Path] = None
    last_saved_iteration = None
    stop = False
    with ExitSignalHandler() as signals:
        if datasets[1] is not None and trainer.iteration == 0:
            first_val = last_val = trainer.evaluate(iterators)
            logger.validation(0, first_val)
        while trainer.iteration < args.train_iters:
            loss, grad_norm, skipped = trainer.train_step(iterators.train)
            trainer.iteration += 1
            trainer.consumed_samples += args.global_batch_size
            if skipped:
                say(f"iteration {trainer.iteration}: "
                    f"{'lm loss is ' + str(loss) if not math.isfinite(loss) else 'a gradient is not finite'}"
                    "; skipped the optimizer step")
            logger.step(trainer.iteration, loss, grad_norm, trainer.optimizer.param_groups[0]["lr"],
                        skipped, trainer.consumed_samples)
            done = trainer.iteration == args.train_iters
            with logger.untimed():
                if datasets[1] is not None and (trainer.iteration % args.eval_interval == 0 or done):
                    last_val = trainer.evaluate(iterators)
                    first_val = last_val if first_val is None else first_val
                    logger.validation(trainer.iteration, last_val)
                stop = signals.received_anywhere()
                periodic = args.save_interval and trainer.iteration % args.save_interval == 0
                if args.save and (periodic or done or stop):
                    saved = checkpoint.save_training_checkpoint(
                        args, trainer.chunks, trainer.optimizer, trainer.scheduler,
                        trainer.iteration, trainer.consumed_samples, tokenizer_dir,
                    )
                    last_saved_iteration = trainer.iteration
                    say(f"saved checkpoint {saved}")
            if stop:
                say(f"received {signals.name}: saved iteration {last_saved_iteration} and stopped")
                break
    logger.close()
    return TrainResult(trainer.iteration, first_val, last_val, saved, logger.total_skipped,
                       stopped_by_signal=stop, is_reporter=rank == 0)


def _parameter_count(chunks) -> int:
    """Parameters of the whole model, counted from every rank's chunks: tensor-parallel shards
    summed, replicated tensors once, the tied output copy of the last pipeline stage not."""
    from megatron.core.utils import unwrap_model

    local = 0
    first_tensor_rank = parallel_state.get_tensor_model_parallel_rank() == 0
    for model in unwrap_model(list(chunks)):
        for name, param in model.named_parameters():
            if name == "output_layer.weight":
                continue
            if getattr(param, "tensor_model_parallel", False) or first_tensor_rank:
                local += param.numel()
    total = torch.tensor([local], dtype=torch.int64,
                         device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(total, group=parallel_state.get_model_parallel_group())
    return int(total.item())


def _banner(args, config, world: int, parameters: int) -> str:
    dp = data_parallel_size(args, world)
    return (
        f"training {'Hawk' if config.is_hawk else 'Griffin'} ({''.join(config.layer_types)}, "
        f"{parameters / 1e6:.2f}M parameters, vocabulary {config.vocab_size}) for "
        f"{args.train_iters} iterations | {world} process(es): TP={args.tensor_model_parallel_size} "
        f"PP={args.pipeline_model_parallel_size} DP={dp} | global batch {args.global_batch_size} "
        f"x {args.seq_length} tokens | {'bf16' if args.bf16 else 'fp32'} | "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
