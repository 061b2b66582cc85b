"""Launching multi-process checks and the pieces the workers share.

`launch(worker, world_size, ...)` starts `world_size` processes (torch.multiprocessing spawn),
each with a torch.distributed process group (gloo on CPUs, NCCL on GPUs), runs
`worker(*args)` in every one and returns each rank's return value. A worker that fails or
hangs fails the launch; the processes it started are killed, none is left behind.

The references are single-process runs computed inside the same workers from the same full
weights, so every comparison is against an independent path through the model (no pipeline, no
tensor or data parallelism, no DDP, no Megatron schedule).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List, Optional
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORKER_TIMEOUT_S = 600
SEQ_LENGTH = 32
MICRO_BATCH = 2
NUM_MICROBATCHES = 4
VOCAB = 512

# Tiny models deep enough for every layout: 8 Griffin layers (R R A R R A R R) and 4 Hawk
# layers split into 2 stages x 2 virtual chunks, or unevenly.
ARCHITECTURES = {
    "griffin": dict(preset="griffin-tiny", num_layers=8, uneven=(3, 5)),
    "hawk": dict(preset="hawk-tiny", num_layers=4, uneven=(1, 3)),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank, world_size, port, result_dir, backend, worker, args):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, timeout=timedelta(seconds=WORKER_TIMEOUT_S))
    try:
        from griffin_megatron import compat

        compat.install()
        # Workers drive Megatron's schedules, optimizers and checkpointing themselves.
        with compat.cuda_requests_on_cpu():
            result = worker(*args)
        torch.save(result, Path(result_dir) / f"rank{rank}.pt")
    except BaseException:
        (Path(result_dir) / f"rank{rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        from megatron.core import parallel_state

        if parallel_state.model_parallel_is_initialized():
            parallel_state.destroy_model_parallel()
        dist.destroy_process_group()


def launch(
    worker: Callable, world_size: int, *args, backend: Optional[str] = None,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> List:
    """Run worker(*args) on `world_size` ranks; returns the ranks' results in rank order."""
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    with tempfile.TemporaryDirectory(prefix="griffin-parallel-") as result_dir:
        # gloo runs are the CPU path, also on GPU hosts: the spawned children inherit this.
        hide_gpus = {"CUDA_VISIBLE_DEVICES": ""} if backend == "gloo" else {}
        with mock.patch.dict(os.environ, hide_gpus):
            context = mp.start_processes(
                _entry,
                args=(world_size, _free_port(), result_dir, backend, worker, args),
                nprocs=world_size,
                join=False,
                start_method="spawn",
            )
        deadline = time.monotonic() + timeout_s
        try:
            while not context.join(timeout=5):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{worker.__name__} did not finish on {world_size} ranks within "
                        f"{timeout_s:.0f} s."
                    )
        except BaseException as error:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join()
            errors = sorted(Path(result_dir).glob("rank*.error"))
            details = "\n".join(path.read_text() for path in errors)
            raise RuntimeError(f"{worker.__name__} failed:\n{details}") from error
        return [torch.load(Path(result_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


# Worker-side helpers -------------------------------------------------------------------------

def use_layout(layout: Optional[dict] = None) -> None:
    """(Re)initialise Megatron's model-parallel groups in a running worker for a layout dict
    (tp, pp, vpp; other keys are model options); no layout is TP=1, PP=1."""
    from megatron.core import parallel_state

    from griffin_megatron import runtime

    layout = layout or {}
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    runtime.ensure_initialized(layout.get("tp", 1), layout.get("pp", 1), layout.get("vpp"))


def tiny_config(arch: str, tp=1, pp=1, vpp=None, sp=False, uneven=False, **overrides):
    """The fp32 tiny Griffin / Hawk of these tests at one parallel layout."""
    from griffin_megatron.presets import get_preset

    spec = ARCHITECTURES[arch]
    fields = dict(
        num_layers=spec["num_layers"],
        seq_length=SEQ_LENGTH,
        vocab_size=VOCAB,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp,
        sequence_parallel=sp,
        pipeline_dtype=torch.float32,
        use_cpu_initialization=True,
        calculate_per_token_loss=True,
    )
    if vpp is not None:
        # Megatron-LM's settings for the interleaved schedule (required with two stages).
        fields.update(overlap_p2p_comm=True, batch_p2p_comm=False)
    if uneven:
        fields["num_layers_in_first_pipeline_stage"] = spec["uneven"][0]
        fields["num_layers_in_last_pipeline_stage"] = spec["uneven"][1]
    fields.update(overrides)
    return get_preset(spec["preset"], **fields)


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def make_microbatches(count: int = NUM_MICROBATCHES, seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """Micro-batches with several documents per row (position ids restart at 0) and a loss mask
    with holes; identical on every rank."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        tokens = torch.randint(0, VOCAB, (MICRO_BATCH, SEQ_LENGTH), generator=generator)
        labels = torch.randint(0, VOCAB, (MICRO_BATCH, SEQ_LENGTH), generator=generator)
        loss_mask = (torch.rand(MICRO_BATCH, SEQ_LENGTH, generator=generator) > 0.2).float()
        position_ids = torch.empty(MICRO_BATCH, SEQ_LENGTH, dtype=torch.long)
        for row in range(MICRO_BATCH):
            starts = torch.randperm(SEQ_LENGTH - 1, generator=generator)[:2] + 1
            reset = torch.zeros(SEQ_LENGTH, dtype=torch.bool)
            reset[0] = True
            reset[starts] = True
            index = torch.arange(SEQ_LENGTH)
            last_start = torch.cummax(torch.where(reset, index, torch.zeros_like(index)), 0).values
            position_ids[row] = index - last_start
        batches.append(
            dict(tokens=tokens, labels=labels, loss_mask=loss_mask, position_ids=position_ids)
        )
    return batches


def data_parallel_share(batches: List[dict]) -> List[dict]:
    """This data-parallel rank's contiguous share of the global batch's micro-batches."""
    from megatron.core import parallel_state

    size = parallel_state.get_data_parallel_world_size()
    rank = parallel_state.get_data_parallel_rank()
    per_rank = len(batches) // size
    return batches[rank * per_rank : (rank + 1) * per_rank]


def reference_model(config):
    """A single-stage, tensor-parallel-size-1 model (call under a TP=1, PP=1 layout)."""
    from griffin_megatron.model import GriffinModel

    model = GriffinModel(config, pre_process=True, post_process=True)
    return model.to(device())


def full_weights(arch: str, seed: int = 1234) -> Dict[str, torch.Tensor]:
    """Full (TP=1) initial weights of the tiny model, the same on every rank."""
    torch.manual_seed(seed)
    model = reference_model(tiny_config(arch))
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


def reference_loss_and_grads(arch: str, weights: dict, batches: List[dict]):
    """Token-mean loss of the whole global batch and every parameter's gradient, by plain
    forward/backward of one unsplit model (the summed loss is differentiated, then divided by the
    token count, as Megatron's per-token loss normalisation does)."""
    from griffin_megatron.checkpoint.full_state import load_full_state_dict

    model = reference_model(tiny_config(arch))
    load_full_state_dict(model, weights)
    total, tokens = 0.0, 0.0
    for batch in batches:
        batch = {k: v.to(device()) for k, v in batch.items()}
        losses = model(batch["tokens"], batch["position_ids"], labels=batch["labels"])
        total = total + (losses.float() * batch["loss_mask"]).sum()
        tokens += batch["loss_mask"].sum().item()
    total.backward()
    grads = {name: (p.grad.detach().float() / tokens).cpu() for name, p in model.named_parameters()}
    return total.item() / tokens, grads


def relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    """max |value - reference| / max |reference| (0 when both are 0)."""
    scale = reference.abs().max().item()
    diff = (value.float() - reference.float()).abs().max().item()
    return diff / scale if scale > 0 else diff


def broadcast_from_any(value):
    """The value held by whichever ranks have one (e.g. the last pipeline stage), on all ranks."""
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    held = [v for v in gathered if v is not None]
    return held[0] if held else None
