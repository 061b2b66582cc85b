"""`plan`'s activation model on a GPU: Triton RG-LRU, CUDA SDPA, paper-size layers, bf16.

Per layer, the distinct storages autograd saves must match `planning.activations` within 2 %
(the CUDA attention kernels pad the mask to 16 columns and the log-sum-exp to 32 rows, which
the model does not count); for the whole forward, the allocator's growth must match within 5 %.
"""

import pytest
import torch

from griffin_megatron.model import GriffinModel
from griffin_megatron.planning import activations as act
from griffin_megatron.presets import get_preset
from griffin_megatron.runtime import ensure_initialized

from tests.recipes.saved_tensors import saved_bytes_by_part

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.mark.parametrize("preset, batch", [("griffin-100m", 2), ("griffin-100m", 1), ("hawk-100m", 2)])
def test_activation_model_matches_the_gpu(cuda, preset, batch):
    ensure_initialized()
    seq = 2048
    config = get_preset(preset, params_dtype=torch.bfloat16, bf16=True, seq_length=seq)
    torch.manual_seed(0)
    model = GriffinModel(config).cuda()
    ids = torch.randint(0, config.vocab_size, (batch, seq), device="cuda")
    positions = torch.arange(seq, device="cuda").expand(batch, -1)
    mb = act.MicroBatch(seq_length=seq, micro_batch_size=batch, rglru_backend="triton")

    measured = saved_bytes_by_part(model, ids, positions)
    shared = sum(v for _, v in act.shared_terms(config, config.layer_types, mb))
    for index, saved in enumerate(measured["layers"]):
        expected = act.layer_bytes(config, config.layer_type(index), mb) + (shared if index == 0 else 0)
        assert saved == pytest.approx(expected, rel=0.02), f"layer {index}"
    del measured

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    loss = model(ids, positions, labels=ids)
    torch.cuda.synchronize()
    grown = torch.cuda.memory_allocated() - before
    expected = (
        sum(act.layer_bytes(config, t, mb) for t in config.layer_types)
        + shared
        + sum(v for _, v in act.embedding_terms(config, mb))
        + sum(v for _, v in act.output_terms(config, mb))
    )
    assert grown == pytest.approx(expected, rel=0.05)
    loss.sum().backward()
