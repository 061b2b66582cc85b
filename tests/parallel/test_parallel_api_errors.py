"""Misuse of the parallel API fails early with one sentence saying what to change."""

from __future__ import annotations

import pytest
import torch
from megatron.core.optimizer import OptimizerConfig

from griffin_megatron import runtime
from griffin_megatron.checkpoint.distributed import load_checkpoint, save_checkpoint
from griffin_megatron.checkpoint.model import save_model_checkpoint
from griffin_megatron.parallel import (
    build_model_chunks,
    build_optimizer,
    default_ddp_config,
    forward_step,
)
from griffin_megatron.presets import get_preset


@pytest.fixture(scope="module", autouse=True)
def megatron_state():
    runtime.ensure_initialized()


def hawk(**overrides):
    return get_preset("hawk-tiny", use_cpu_initialization=True, **overrides)


def test_config_sizes_must_match_the_initialised_groups():
    with pytest.raises(ValueError, match=r"tensor_model_parallel_size=2 but .* initialised with 1"):
        build_model_chunks(hawk(tensor_model_parallel_size=2))


def test_optimizer_needs_ddp_chunks_and_the_same_sharding_choice():
    with pytest.raises(ValueError, match="DDP-wrapped"):
        build_optimizer(build_model_chunks(hawk(), wrap_with_ddp=False), OptimizerConfig(lr=1e-3))
    with pytest.raises(ValueError, match="use_distributed_optimizer=True but the DDP wrapper"):
        build_optimizer(build_model_chunks(hawk()), OptimizerConfig(lr=1e-3, use_distributed_optimizer=True))
    with pytest.raises(ValueError, match="bf16"):
        build_optimizer(build_model_chunks(hawk()), OptimizerConfig(lr=1e-3, bf16=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA streams exist on GPUs")
def test_overlapped_communication_is_refused_on_cpus():
    with pytest.raises(ValueError, match="overlap_grad_reduce=True .* CUDA streams"):
        build_model_chunks(hawk(), ddp_config=default_ddp_config(overlap_grad_reduce=True))


def test_fresh_distributed_optimizer_has_nothing_to_save(tmp_path):
    chunks = build_model_chunks(hawk(), ddp_config=default_ddp_config(use_distributed_optimizer=True))
    optimizer = build_optimizer(chunks, OptimizerConfig(lr=1e-3, use_distributed_optimizer=True))
    with pytest.raises(ValueError, match="no step yet"):
        save_checkpoint(tmp_path / "checkpoint", chunks, optimizer)
    assert not (tmp_path / "checkpoint").exists()


def test_model_only_checkpoint_cannot_restore_an_optimizer(tmp_path):
    chunks = build_model_chunks(hawk())
    save_model_checkpoint(chunks, tmp_path / "model")
    optimizer = build_optimizer(chunks, OptimizerConfig(lr=1e-3))
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "model", chunks, optimizer)
    load_checkpoint(tmp_path / "model", chunks)  # the weights alone load


def test_micro_batch_must_carry_position_ids():
    batch = dict(tokens=torch.zeros(1, 4, dtype=torch.long), labels=torch.zeros(1, 4, dtype=torch.long),
                 loss_mask=torch.ones(1, 4))
    with pytest.raises(KeyError, match="position_ids"):
        forward_step(iter([batch]), model=None)
