"""One rank's training step and evaluation through Megatron-Core's schedules.

A step whose gradients hold NaN or inf on any rank is skipped on every rank (no optimizer
update, no LR step) and reported, as Megatron's optimizer does when it finds `found_inf`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.num_microbatches_calculator import get_num_microbatches
from megatron.core.optimizer import OptimizerConfig
from megatron.core.pipeline_parallel import get_forward_backward_func

from ..parallel import average_lm_loss, forward_step, gradients_are_finite
from ..run_config import BatchOptions, RunConfig


def optimizer_config(batch: BatchOptions, use_distributed_optimizer: bool) -> OptimizerConfig:
    """Megatron's Adam(W) settings from the options."""
    return OptimizerConfig(
        optimizer="adam",
        lr=batch.lr,
        min_lr=batch.min_lr,
        weight_decay=batch.weight_decay,
        adam_beta1=batch.adam_beta1,
        adam_beta2=batch.adam_beta2,
        adam_eps=batch.adam_eps,
        clip_grad=batch.clip_grad,
        bf16=batch.bf16,
        params_dtype=torch.bfloat16 if batch.bf16 else torch.float32,
        use_distributed_optimizer=use_distributed_optimizer,
    )


def _loss_to_rank0(loss: Optional[float]) -> Optional[float]:
    """The loss lives on the last pipeline stage; rank 0 reports it."""
    value = torch.tensor([float("nan") if loss is None else loss], dtype=torch.float64,
                         device="cuda" if torch.cuda.is_available() else "cpu")
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        source = parallel_state.get_pipeline_model_parallel_last_rank()
        dist.broadcast(value, src=source, group=parallel_state.get_pipeline_model_parallel_group())
    return value.item()


class Trainer:
    """This rank's model chunks, optimizer and schedule."""

    def __init__(self, run: RunConfig, chunks: List, optimizer, scheduler):
        self.run = run
        self.chunks = chunks
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.forward_backward = get_forward_backward_func()
        self.iteration = 0
        self.consumed_samples = 0

    def _run_schedule(self, iterators: List, forward_only: bool) -> float:
        """One global batch through the pipeline schedule; its mean loss on every rank."""
        losses = self.forward_backward(
            forward_step_func=forward_step,
            data_iterator=iterators if len(iterators) > 1 else iterators[0],
            model=self.chunks,
            num_microbatches=get_num_microbatches(),
            seq_length=self.run.model.seq_length,
            micro_batch_size=self.run.batch.micro_batch_size,
            forward_only=forward_only,
        )
        last_stage = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
        return _loss_to_rank0(average_lm_loss(losses) if last_stage else None)

    def train_step(self, iterators: List) -> Tuple[float, Optional[float], bool]:
        """One optimizer step; returns (loss, grad norm, skipped)."""
        for chunk in self.chunks:
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        loss = self._run_schedule(iterators, forward_only=False)
        if gradients_are_finite(self.chunks):
            # Megatron's mixed-precision optimizers report their own found_inf the same way.
            update_successful, grad_norm, _ = self.optimizer.step()
        else:
            update_successful, grad_norm = False, None
        if update_successful:
            self.scheduler.step(increment=self.run.batch.global_batch_size)
        self.iteration += 1
        self.consumed_samples += self.run.batch.global_batch_size
        return loss, grad_norm, not update_successful

    @torch.no_grad()
    def evaluate(self, iterators: Optional[List]) -> Optional[float]:
        """Mean validation loss over --eval-iters global batches (None without validation data)."""
        if iterators is None:
            return None
        for chunk in self.chunks:
            chunk.eval()
        eval_iters = self.run.evaluation.eval_iters
        total = sum(self._run_schedule(iterators, forward_only=True) for _ in range(eval_iters))
        for chunk in self.chunks:
            chunk.train()
        return total / eval_iters
