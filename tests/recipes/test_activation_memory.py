"""The activation model of `plan` against the bytes autograd really keeps (CPU, local backend).

A tiny Griffin runs one forward pass with the loss under saved-tensor hooks; every layer's
distinct saved storages must add up to exactly what `planning.activations` predicts for that
layer type, and likewise the embedding and the final norm / output layer / loss. The CPU runs the
PyTorch RG-LRU path, so the prediction is made for rglru_backend="torch" (the Triton path differs
only in its fp32 state term, which the GPU test checks).
"""

import pytest
import torch

from griffin_megatron.model import GriffinModel
from griffin_megatron.planning import activations as act
from griffin_megatron.presets import get_preset
from griffin_megatron.runtime import ensure_initialized

from tests.recipes.saved_tensors import saved_bytes_by_part


def _measure(seq_length, batch, dtype):
    ensure_initialized()
    config = get_preset(
        "griffin-tiny",
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        use_cpu_initialization=True,
        seq_length=seq_length,
        rglru_backend="torch",
    )
    torch.manual_seed(0)
    model = GriffinModel(config)
    ids = torch.randint(0, config.vocab_size, (batch, seq_length))
    # Two documents per row: position ids restart half-way.
    positions = torch.arange(seq_length).remainder(seq_length // 2 + 1).expand(batch, -1)
    measured = saved_bytes_by_part(model, ids, positions)
    mb = act.MicroBatch(
        seq_length=seq_length,
        micro_batch_size=batch,
        activation_bytes=torch.finfo(dtype).bits // 8,
        rglru_backend="torch",
    )
    return config, measured, mb


@pytest.mark.parametrize(
    "seq_length, batch, dtype",
    [
        pytest.param(256, 2, torch.bfloat16, id="T256-B2-bf16-blocked-attention"),
        pytest.param(64, 3, torch.bfloat16, id="T64-B3-bf16-one-attention-block"),
        pytest.param(200, 1, torch.float32, id="T200-B1-fp32-padded-blocks"),
        pytest.param(200, 2, torch.bfloat16, id="T200-B2-bf16-padded-blocks"),
    ],
)
def test_layer_activation_bytes_match_saved_tensors(seq_length, batch, dtype):
    config, measured, mb = _measure(seq_length, batch, dtype)
    # The reset flags are built once per forward; the first recurrent layer saves them first.
    shared = sum(v for _, v in act.shared_terms(config, config.layer_types, mb))
    for index, saved in enumerate(measured["layers"]):
        kind = config.layer_type(index)
        expected = act.layer_bytes(config, kind, mb) + (shared if index == 0 else 0)
        assert saved == expected, f"layer {index} ({kind})"


def test_embedding_and_output_activation_bytes_match_saved_tensors():
    config, measured, mb = _measure(128, 2, torch.bfloat16)
    assert measured["before"] == sum(v for _, v in act.embedding_terms(config, mb))
    assert measured["after"] == sum(v for _, v in act.output_terms(config, mb))
