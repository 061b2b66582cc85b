"""What a run settles before its first step: data and tokenizer checks, the model config, the
save directory all ranks agree on, and the numbers its banner and throughput report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.utils import unwrap_model

from ..config import GriffinConfig
from ..data.tokenizers import TextTokenizer
from ..run_config import RunConfig, padded_vocab_size, with_vocab_size
from . import data
from .logging import Throughput


def checked_data(data_path: List[str], split: str, tokenizer: Optional[str]) -> TextTokenizer:
    """The tokenizer of the run, after checking the datasets exist and match it."""
    prefixes, _ = data.parse_blend(data_path)
    data.check_dataset_files(prefixes)
    data.check_split_sizes(prefixes, split)
    return data.resolve_tokenizer(prefixes, tokenizer)


def model_config(checked: GriffinConfig, run: RunConfig, tokenizer: TextTokenizer) -> GriffinConfig:
    """The GriffinConfig the run trains: the one its options were checked with
    (training.arguments.check_arguments), with the tokenizer's padded vocabulary."""
    vocab = padded_vocab_size(tokenizer.vocab_size, run.model.make_vocab_size_divisible_by,
                              run.parallel.tensor_model_parallel_size)
    return with_vocab_size(checked, vocab)


def rank0_first(build):
    """Run `build` on rank 0 while the others wait, then return its result everywhere."""
    holder = [build() if dist.get_rank() == 0 else None]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(holder, src=0)
    return holder[0]


def agreed_save_directory(save: Optional[str], no_save: bool) -> Optional[str]:
    """--save, or a fresh ./runs/griffin-<time> chosen by rank 0 (never an existing one)."""
    if no_save:
        return None
    if save is not None:
        return str(Path(save).expanduser())

    def fresh() -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        candidate, n = Path("runs") / f"griffin-{stamp}", 1
        while candidate.exists():
            n += 1
            candidate = Path("runs") / f"griffin-{stamp}-{n}"
        return str(candidate)

    return rank0_first(fresh)


def throughput(run: RunConfig, config: GriffinConfig) -> Throughput:
    from ..flops import griffin_forward_flops, peak_bf16_tflops, training_flops

    seq_length, global_batch = run.model.seq_length, run.batch.global_batch_size
    flops = training_flops(griffin_forward_flops(config, seq_length), global_batch)
    peak = peak_bf16_tflops(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    return Throughput(global_batch * seq_length, flops, dist.get_world_size(), peak)


def parameter_count(chunks) -> int:
    """Parameters of the whole model, counted from every rank's chunks: tensor-parallel shards
    summed, replicated tensors once, the tied output copy of the last pipeline stage not."""
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


def banner(run: RunConfig, config: GriffinConfig, chunks) -> str:
    world = dist.get_world_size()
    parallel, batch = run.parallel, run.batch
    return (
        f"training {'Hawk' if config.is_hawk else 'Griffin'} ({''.join(config.layer_types)}, "
        f"{parameter_count(chunks) / 1e6:.2f}M parameters, vocabulary {config.vocab_size}) for "
        f"{batch.train_iters} iterations | {world} process(es): "
        f"TP={parallel.tensor_model_parallel_size} "
        f"PP={parallel.pipeline_model_parallel_size} CP={parallel.context_parallel_size} "
        f"DP={run.data_parallel_size(world)} | global "
        f"batch {batch.global_batch_size} x {run.model.seq_length} tokens | "
        f"{'bf16' if batch.bf16 else 'fp32'} | {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
