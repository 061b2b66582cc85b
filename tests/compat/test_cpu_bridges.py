"""The CPU bridges for Megatron-Core's CUDA assumptions (griffin_megatron.compat.cpu).

Each bridge is exercised through the Megatron-Core code that needs it, the torch.cuda stand-ins
and the torch-function mode are shown to touch only calls made from Megatron, and all of them
only inside their block, after which torch.cuda and Megatron's RNG-state functions are the
objects they were.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.optimizer import OptimizerConfig
from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32, get_grad_norm_fp32
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.tensor_parallel import random as megatron_random

from griffin_megatron import compat, runtime
from griffin_megatron.compat import cpu
from griffin_megatron.parallel import (
    attach_to_schedule,
    average_lm_loss,
    build_model_chunks,
    build_optimizer,
    forward_step,
)
from griffin_megatron.presets import get_preset

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the bridges stay off with CUDA")


@pytest.fixture(scope="module", autouse=True)
def megatron_state():
    runtime.ensure_initialized()


@pytest.fixture
def cuda_requests_on_cpu():
    with compat.cuda_requests_on_cpu():
        yield


def run_as(module_name: str, source: str, **names):
    """Evaluate `source` as if written in module `module_name`."""
    return eval(compile(source, f"<{module_name}>", "eval"), {"__name__": module_name, "torch": torch, **names})


BLOCK_REPLACES = [(torch.cuda, name) for name in cpu._CPU_STAND_INS] + [
    (megatron_random, "_get_cuda_rng_state"), (megatron_random, "_set_cuda_rng_state")]


def test_the_block_replaces_and_restores_the_very_objects():
    before = [getattr(owner, name) for owner, name in BLOCK_REPLACES]
    with compat.cuda_requests_on_cpu():
        with compat.cuda_requests_on_cpu():  # re-entrant: the outer block still holds them
            pass
        assert cpu.is_open()
        inside = [getattr(owner, name) for owner, name in BLOCK_REPLACES]
        assert all(a is not b for a, b in zip(inside, before))
    assert not cpu.is_open()
    assert all(getattr(owner, name) is was for (owner, name), was in zip(BLOCK_REPLACES, before))


def test_the_block_restores_after_an_error():
    before = torch.cuda.current_device
    with pytest.raises(KeyError):
        with compat.cuda_requests_on_cpu():
            raise KeyError("inside")
    assert torch.cuda.current_device is before and not cpu.is_open()


def test_the_seeded_rng_tracker_keeps_cpu_generator_states():
    compat.model_parallel_manual_seed(1234)
    tracker = get_cuda_rng_tracker()
    assert isinstance(tracker, cpu.CpuRNGStatesTracker)
    with tracker.fork():
        first = torch.rand(4)
    compat.model_parallel_manual_seed(1234)
    with tracker.fork():
        assert torch.equal(torch.rand(4), first)


@pytest.mark.parametrize(
    "source",
    [
        "torch.cuda.current_device()",
        "torch.cuda.synchronize()",
        "torch.cuda.current_stream().wait_event(torch.cuda.Event())",
        "torch.cuda.stream(torch.cuda.Stream()).__enter__()",
    ],
)
def test_torch_cuda_stand_ins_answer_megatron_only(source, cuda_requests_on_cpu):
    run_as("megatron.core.distributed.param_and_grad_buffer", source)  # no error
    with pytest.raises((AssertionError, RuntimeError)):
        run_as("somebody.else", source)


def test_stream_and_event_stay_classes_for_other_packages(cuda_requests_on_cpu):
    """transformers annotates with `torch.cuda.Stream | None` at import time."""
    assert isinstance(torch.cuda.Stream | None, object)
    stand_in = run_as("megatron.core.distributed.param_and_grad_buffer", "torch.cuda.Stream()")
    assert isinstance(stand_in, torch.cuda.Stream)
    assert isinstance(run_as("megatron.core.timers", "torch.cuda.Event()"), torch.cuda.Event)


def test_current_device_is_the_cpu_for_megatron(cuda_requests_on_cpu):
    assert run_as("megatron.core.distributed.param_and_grad_buffer", "torch.cuda.current_device()") == "cpu"


@pytest.mark.parametrize(
    "source",
    [
        "torch.zeros([], dtype=torch.int, device='cuda')",  # schedules' token counter
        "torch.tensor([1.0], dtype=torch.float, device='cuda')",  # optimizer flags
        "torch.empty_like(torch.ones(3), device=torch.device('cuda', 0))",  # checkpoint exchange
        "torch.ones(2).cuda()",
        "torch.ones(2).to('cuda')",
        "torch.zeros(2, device=0, pin_memory=True)",
    ],
)
def test_megatron_cuda_literals_land_on_the_cpu(source, cuda_requests_on_cpu):
    assert run_as("megatron.core.pipeline_parallel.schedules", source).device.type == "cpu"


def test_the_mode_acts_inside_its_block_only():
    cuda_literal = "torch.zeros(2, device='cuda')"
    with pytest.raises((RuntimeError, AssertionError)):
        run_as("megatron.core.pipeline_parallel.schedules", cuda_literal)
    with compat.cuda_requests_on_cpu():
        with compat.cuda_requests_on_cpu():  # re-entrant
            assert run_as("megatron.core.pipeline_parallel.schedules", cuda_literal).device.type == "cpu"
        assert run_as("megatron.core.pipeline_parallel.schedules", cuda_literal).device.type == "cpu"
    with pytest.raises((RuntimeError, AssertionError)):
        run_as("megatron.core.pipeline_parallel.schedules", cuda_literal)


def test_cuda_requests_outside_megatron_still_fail(cuda_requests_on_cpu):
    with pytest.raises((AssertionError, RuntimeError)):
        run_as("somebody.else", "torch.zeros(1, device='cuda')")


def test_type_names_read_as_on_a_gpu_only_for_megatron(cuda_requests_on_cpu):
    t = torch.ones(2)
    assert run_as("megatron.core.optimizer.clip_grads", "t.type()", t=t) == "torch.cuda.FloatTensor"
    assert run_as("megatron.core.optimizer.clip_grads", "t.type('torch.cuda.HalfTensor')", t=t).dtype == torch.float16
    assert t.type() == "torch.FloatTensor"


def test_grad_norm_and_clipping_run_on_cpu_tensors(cuda_requests_on_cpu):
    grads = [torch.full((3,), 3.0), torch.full((4,), 4.0)]
    norm = get_grad_norm_fp32(grads)
    assert norm == pytest.approx(torch.cat(grads).norm().item())
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    clip_grad_by_total_norm_fp32(params, max_norm=1.0, total_norm=norm)
    assert torch.cat([p.grad for p in params]).norm().item() == pytest.approx(1.0, rel=1e-5)


def test_recompute_restores_the_rng_streams(cuda_requests_on_cpu):
    """CheckpointFunction saves "CUDA" RNG states in forward and restores them to recompute:
    the recomputed dropout mask must be the forward's even after other draws in between."""
    tracker = get_cuda_rng_tracker()

    def dropout(x):
        with tracker.fork():
            return F.dropout(x * 2.0, p=0.5, training=True)

    x = torch.randn(256, requires_grad=True)
    states = (torch.get_rng_state(), tracker.get_states())
    y = tensor_parallel.checkpoint(dropout, False, x)
    with tracker.fork():
        torch.rand(100)  # advance both streams before the recompute
    torch.rand(100)
    y.backward(torch.ones_like(y))
    recomputed = x.grad.clone()

    torch.set_rng_state(states[0])
    tracker.set_states(states[1])
    x.grad = None
    expected = dropout(x)
    expected.backward(torch.ones_like(expected))
    assert torch.equal(y, expected)
    assert torch.equal(recomputed, x.grad)
    assert 0 < (x.grad == 0).sum() < x.numel()  # dropout really dropped some


def test_schedule_ddp_and_optimizer_step_on_cpu(cuda_requests_on_cpu):
    """Megatron's no-pipelining schedule (token counter), DDP's grad buffers (current device)
    and the FP32 optimizer with clipping (CUDA flags, type checks) in one training step."""
    config = get_preset("hawk-tiny", use_cpu_initialization=True, calculate_per_token_loss=True)
    chunks = build_model_chunks(config)
    optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-3, clip_grad=1.0))
    attach_to_schedule(config, chunks, optimizer)
    tokens = torch.randint(0, config.vocab_size, (2, 16))
    batch = dict(tokens=tokens, labels=tokens.roll(-1, 1), loss_mask=torch.ones(2, 16),
                 position_ids=torch.arange(16).repeat(2, 1))
    before = [p.detach().clone() for p in chunks[0].parameters()]
    losses = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=iter([batch, batch]), model=chunks,
        num_microbatches=2, seq_length=16, micro_batch_size=2,
    )
    assert all(p.main_grad.device.type == "cpu" for p in chunks[0].parameters())
    grads = torch.cat([p.main_grad.reshape(-1) for p in chunks[0].parameters()])
    updated, grad_norm, _ = optimizer.step()
    assert updated and grad_norm == pytest.approx(grads.norm().item(), rel=1e-5)
    assert torch.isfinite(torch.tensor(average_lm_loss(losses)))
    assert any(not torch.equal(b, p) for b, p in zip(before, chunks[0].parameters()))
