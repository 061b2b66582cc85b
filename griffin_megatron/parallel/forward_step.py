"""The forward step Megatron-Core's schedules call for a GriffinModel, and its loss.

`get_forward_backward_func()` runs `forward_step(data_iterator, model)` once per micro-batch on
every pipeline stage. A micro-batch is a dict of [B, T] tensors (Megatron-LM's GPT batch):

    tokens        input token ids
    labels        next-token targets
    loss_mask     1.0 where the token counts towards the loss
    position_ids  positions restarting at 0 at each document start

Every stage reads the batch: the first stage embeds `tokens`, and every stage needs
`position_ids` to find document boundaries (Conv1D taps, RG-LRU resets, attention windows,
RoPE); the last stage computes the loss from `labels` and `loss_mask`. All tensor-parallel
ranks of a stage must see the same micro-batch. With context parallelism every CP rank reads
the whole micro-batch and keeps its contiguous shard of each sequence (context_parallel.shards).
"""

from __future__ import annotations

from functools import partial
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from megatron.core import parallel_state
from torch import Tensor

from .. import context_parallel

BATCH_KEYS = ("tokens", "labels", "loss_mask", "position_ids")
LOSS_REPORT_KEY = "lm loss"


def _to_device(batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise KeyError(
            f"a Griffin micro-batch needs {', '.join(BATCH_KEYS)}; this one lacks "
            f"{', '.join(missing)}."
        )
    if not torch.cuda.is_available():
        return batch
    device = torch.device("cuda", torch.cuda.current_device())
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def masked_token_loss(loss_mask: Tensor, output_tensor: Tensor) -> Tuple[Tensor, Tensor, dict]:
    """Megatron's 3-tuple loss: (sum of masked token losses, number of tokens, report).

    The schedule divides the sum by the token count (per micro-batch), or, with
    `config.calculate_per_token_loss`, leaves the division to `finalize_model_grads`, which
    divides the gradients by the token count of the whole global batch.
    The report [loss_sum, num_tokens] sums over micro-batches and data-parallel ranks.
    """
    mask = loss_mask.reshape(-1).float()
    loss_sum = torch.sum(output_tensor.reshape(-1).float() * mask)
    num_tokens = mask.sum().detach().to(torch.int)
    report = torch.cat([loss_sum.detach().view(1), num_tokens.float().view(1)])
    return loss_sum, num_tokens, {LOSS_REPORT_KEY: report}


def forward_step(data_iterator: Iterator[Dict[str, Tensor]], model):
    """Megatron-Core forward_step_func for GriffinModel: -> (output, loss function)."""
    batch = _to_device(next(data_iterator))
    seq = None
    shard = context_parallel.current_shard()
    if shard is not None:
        batch, seq = context_parallel.shard_batch(batch, shard)  # this rank's [B, T / CP]
    output = model(batch["tokens"], batch["position_ids"], labels=batch["labels"],
                   packed_seq_params=seq)
    return output, partial(masked_token_loss, batch["loss_mask"])


def average_lm_loss(losses_reduced: List[dict]) -> Optional[float]:
    """Token-weighted mean loss of a global batch from the schedule's return value (the list of
    per-micro-batch reports), summed across data-parallel ranks; None off the last stage.
    Every data-parallel rank of the last stage must call it (it all-reduces)."""
    if not losses_reduced:
        return None
    total = torch.stack([report[LOSS_REPORT_KEY].view(-1) for report in losses_reduced]).sum(0)
    torch.distributed.all_reduce(
        total, group=parallel_state.get_data_parallel_group(with_context_parallel=True)
    )
    return (total[0] / total[1].clamp(min=1)).item()
