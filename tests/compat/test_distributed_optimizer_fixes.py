"""The in-process fixes for the distributed-optimizer checkpoints of Megatron-Core 0.16 to 0.19
(griffin_megatron.compat.distributed_optimizer): each unfixed method still shows its bug on the
installed release, and the fixed one does not. One process, a tiny Hawk whose gradient buffer is
split into two buckets, one optimizer step."""

from __future__ import annotations

import pytest
import torch
from megatron.core.optimizer import OptimizerConfig
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.utils import unwrap_model

from griffin_megatron import compat, runtime
from griffin_megatron.checkpoint.distributed import (
    OPTIMIZER_SHARDING_METADATA,
    load_checkpoint,
    save_checkpoint,
)
from griffin_megatron.parallel import (
    attach_to_schedule,
    build_model_chunks,
    build_optimizer,
    default_ddp_config,
    forward_step,
    wrap_data_parallel,
)
from griffin_megatron.compat import distributed_optimizer
from griffin_megatron.compat.distributed_optimizer import FIXED, ORIGINAL
from griffin_megatron.presets import get_preset

FULLY_RESHARDABLE = dict(OPTIMIZER_SHARDING_METADATA)


def build():
    config = get_preset("hawk-tiny", use_cpu_initialization=True, calculate_per_token_loss=True)
    chunks = build_model_chunks(config, wrap_with_ddp=False)
    # What GPTModel does to the tied embedding on pipeline stages: DDP then gives it a bucket of
    # its own, so the buffer has two buckets, the first padded at its end.
    unwrap_model(chunks[0]).embedding.word_embeddings.weight.shared_embedding = True
    chunks = wrap_data_parallel(chunks, config, default_ddp_config(use_distributed_optimizer=True))
    optimizer = build_optimizer(
        chunks, OptimizerConfig(optimizer="adam", lr=1e-2, use_distributed_optimizer=True)
    )
    attach_to_schedule(config, chunks, optimizer)
    return chunks, optimizer


def one_step(chunks, optimizer):
    tokens = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))
    batch = dict(tokens=tokens, labels=tokens.roll(-1, 1), loss_mask=torch.ones(2, 16),
                 position_ids=torch.arange(16).repeat(2, 1))
    for chunk in chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=iter([batch]), model=chunks,
        num_microbatches=1, seq_length=16, micro_batch_size=2,
    )
    optimizer.step()


def inner(optimizer) -> DistributedOptimizer:
    return optimizer.chained_optimizers[0]


def steps(optimizer) -> list:
    opt = inner(optimizer).optimizer
    return [opt.state[p]["step"] for group in opt.param_groups for p in group["params"]]


@pytest.fixture(scope="module", autouse=True)
def cuda_requests_on_cpu():
    with compat.cuda_requests_on_cpu():
        yield


def test_fixes_apply_only_to_the_affected_releases(monkeypatch):
    from griffin_megatron.compat import versions

    stub = type("Stub", (), {})
    monkeypatch.setattr(distributed_optimizer, "DistributedOptimizer", stub)
    for release, affected in (((0, 15, 0), False), ((0, 16, 1), True), ((0, 19, 2), True),
                              ((0, 20, 0), False)):
        monkeypatch.setattr(versions, "megatron_core_version", lambda r=release: r)
        with distributed_optimizer.fixed() as on:
            assert on is affected
            assert all((getattr(stub, name, None) is method) is affected
                       for name, method in FIXED.items())
        assert not set(FIXED) & set(vars(stub))  # gone again on exit


def test_the_fixes_last_only_for_their_block():
    assert distributed_optimizer.needed()
    with distributed_optimizer.fixed():
        with distributed_optimizer.fixed():  # re-entrant
            pass
        assert all(vars(DistributedOptimizer)[name] is FIXED[name] for name in FIXED)
    assert all(vars(DistributedOptimizer)[name] is ORIGINAL[name] for name in FIXED)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runtime.ensure_initialized()
    chunks, optimizer = build()
    assert len(chunks[0].buffers[0].buckets) == 2
    one_step(chunks, optimizer)
    directory = tmp_path_factory.mktemp("distopt") / "checkpoint"
    save_checkpoint(directory, chunks, optimizer)
    return chunks, optimizer, directory


def saved_params_match_weights(state_function, chunks, optimizer) -> list:
    model_state = unwrap_model(chunks[0]).sharded_state_dict()
    by_key = {t.key: t for t in model_state.values() if hasattr(t, "key")}
    param_state = state_function(inner(optimizer), model_state, False, dict(FULLY_RESHARDABLE))
    prefix = "optimizer.state.param."
    return [
        torch.equal(tensors["param"].data, by_key[tensors["param"].key[len(prefix):]].data)
        for tensors in param_state.values()
    ]


def test_saved_optimizer_params_are_the_weights(trained):
    chunks, optimizer, _ = trained
    fixed = saved_params_match_weights(
        FIXED["sharded_param_state_fully_reshardable"], chunks, optimizer
    )
    assert all(fixed)
    unfixed = saved_params_match_weights(
        ORIGINAL["sharded_param_state_fully_reshardable"], chunks, optimizer
    )
    assert not all(unfixed), "Megatron-Core saves later buckets correctly now; drop fix 1"


def test_resume_restores_state_with_one_step_per_parameter(trained):
    chunks, optimizer, directory = trained
    fresh_chunks, fresh = build()
    load_checkpoint(directory, fresh_chunks, fresh)
    loaded = steps(fresh)
    assert len({id(step) for step in loaded}) == len(loaded)
    assert all(step.item() == 1 for step in loaded)
    old_state, new_state = inner(optimizer).optimizer.state, inner(fresh).optimizer.state
    old_params = [p for g in inner(optimizer).optimizer.param_groups for p in g["params"]]
    new_params = [p for g in inner(fresh).optimizer.param_groups for p in g["params"]]
    for old, new in zip(old_params, new_params):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(old_state[old][key], new_state[new][key])
    one_step(fresh_chunks, fresh)
    assert all(step.item() == 2 for step in steps(fresh))


def test_unfixed_load_fails_on_torch_adam_step(trained, monkeypatch):
    _, _, directory = trained
    monkeypatch.setitem(FIXED, "_set_main_param_and_optimizer_states",
                        ORIGINAL["_set_main_param_and_optimizer_states"])
    fresh_chunks, fresh = build()
    with pytest.raises(KeyError, match="step"):
        load_checkpoint(directory, fresh_chunks, fresh)


def test_unfixed_load_shares_one_step_tensor(trained, monkeypatch):
    _, _, directory = trained
    monkeypatch.setitem(FIXED, "load_state_dict", ORIGINAL["load_state_dict"])
    fresh_chunks, fresh = build()
    load_checkpoint(directory, fresh_chunks, fresh)
    assert len({id(step) for step in steps(fresh)}) == 1


def test_save_and_load_leave_megatron_s_own_methods(trained):
    """The fixes are on only while checkpoint/distributed.py saves and loads."""
    chunks, optimizer, directory = trained
    fresh_chunks, fresh = build()
    load_checkpoint(directory, fresh_chunks, fresh)
    assert all(vars(DistributedOptimizer)[name] is ORIGINAL[name] for name in FIXED)
