"""Tensor, sequence, pipeline and data parallelism for Griffin with Megatron-Core.

The pieces a training loop needs, in the order it uses them:

    runtime.ensure_initialized(tp, pp, vpp)                  process groups, seeded RNG tracker
    chunks = build_model_chunks(config)                      model chunks, DDP-wrapped
    optimizer = build_optimizer(chunks, OptimizerConfig(...))
    attach_to_schedule(config, chunks, optimizer)            grad finalisation hooks
    losses = get_forward_backward_func()(forward_step_func=forward_step, ...)
    optimizer.step(); scheduler.step(increment)
    checkpoint.distributed.save_checkpoint(dir, chunks, optimizer, scheduler, iteration=it)

Everything runs on GPUs with NCCL and on CPUs with gloo: on a CPU, run the schedules and the
optimizer step inside `griffin_megatron.compat.cuda_requests_on_cpu()` (see there).
"""

from .data_parallel import default_ddp_config, wrap_data_parallel
from .forward_step import average_lm_loss, forward_step, masked_token_loss
from .grads import attach_to_schedule, finalize_grads, full_gradients, gradients_are_finite
from .model_provider import build_griffin_chunk, build_model_chunks, virtual_stages
from .optimizer import build_optimizer, build_scheduler

__all__ = [
    "attach_to_schedule",
    "average_lm_loss",
    "build_griffin_chunk",
    "build_model_chunks",
    "build_optimizer",
    "build_scheduler",
    "default_ddp_config",
    "finalize_grads",
    "forward_step",
    "full_gradients",
    "gradients_are_finite",
    "masked_token_loss",
    "virtual_stages",
    "wrap_data_parallel",
]
