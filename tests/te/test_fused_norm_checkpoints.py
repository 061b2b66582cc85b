"""The te backend's checkpoint and naming plumbing on CPU, with a stand-in for TE's fused
norm + linear that has TE's parameter names and `_extra_state` entries (fused_norm_standin.py).

- Its parameters map onto the local backend's names, so full state dicts move between backends.
- Distributed checkpoints written by either backend load into the other (same logits).
- HF export of a checkpoint written by the fused backend equals the local model's export.
- Cached generation through the fused layers (each GriffinLayer's prefill and step, with the
  norms inside the linears) gives the logits of the model's forward.
"""

import pytest
import torch

from griffin_megatron import layer_specs
from griffin_megatron.checkpoint.model import load_model_checkpoint, save_model_checkpoint
from griffin_megatron.cli.main import main
from griffin_megatron.generation import GriffinInferenceCache, decode_step, forward_with_cache
from griffin_megatron.model import GriffinModel
from griffin_megatron.modules.local_attention import LocalWindowedAttention
from griffin_megatron.modules.norm import GriffinRMSNorm
from griffin_megatron.modules.parallel_linear import RowParallelLinearWithStep
from griffin_megatron.presets import get_preset
from griffin_megatron.runtime import ensure_initialized
from griffin_megatron.checkpoint.full_state import gather_full_state_dict, load_full_state_dict

from fused_norm_standin import (
    BiasFreeFusedNormColumnParallelLinear,
    FusedNormColumnParallelLinear,
    NormWithExtraState,
)


@pytest.fixture
def fused_backend(monkeypatch):
    """Make backend='te' build the stand-in layers (TE's structure and names) on the CPU."""
    monkeypatch.setitem(
        layer_specs._LAYER_SPECS,
        "te",
        lambda ffn_hidden_size: layer_specs.fused_norm_layer_specs(
            FusedNormColumnParallelLinear,
            RowParallelLinearWithStep,
            BiasFreeFusedNormColumnParallelLinear,
            LocalWindowedAttention,
            ffn_hidden_size,
        ),
    )
    monkeypatch.setattr(
        layer_specs, "_final_norm", lambda b: NormWithExtraState if b == "te" else GriffinRMSNorm
    )
    monkeypatch.setattr(layer_specs, "check_backend", lambda backend: None)


def build(backend, seed):
    ensure_initialized()
    config = get_preset("griffin-tiny", use_cpu_initialization=True)
    torch.manual_seed(seed)
    model = GriffinModel(config, backend=backend).eval()
    with torch.no_grad():  # non-trivial norm weights, so a mix-up of norms would show
        for name, param in model.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                param.normal_(0.0, 0.3)
    return model


def inputs(model):
    torch.manual_seed(123)
    ids = torch.randint(0, model.config.vocab_size, (2, 40))
    positions = torch.cat([torch.arange(25), torch.arange(15)]).expand(2, -1)
    return ids, positions


def logits(model):
    with torch.no_grad():
        return model(*inputs(model))


def test_fused_names_map_to_local_names(fused_backend):
    fused = build("te", seed=1)
    names = {n for n, _ in fused.named_parameters()}
    assert "decoder.layers.0.self_attention.linear_in.layer_norm_weight" in names
    assert "decoder.layers.2.self_attention.linear_qkv.layer_norm_weight" in names
    assert "decoder.layers.1.mlp.linear_fc1.layer_norm_weight" in names
    local = build("local", seed=2)
    assert set(gather_full_state_dict(fused)) == set(gather_full_state_dict(local))


def test_full_state_dict_moves_between_backends(fused_backend):
    local = build("local", seed=1)
    fused = build("te", seed=2)
    load_full_state_dict(fused, gather_full_state_dict(local))
    torch.testing.assert_close(logits(fused), logits(local), rtol=0, atol=0)
    back = gather_full_state_dict(fused)
    for name, tensor in gather_full_state_dict(local).items():
        torch.testing.assert_close(back[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("saved_by, loaded_by", [("te", "local"), ("local", "te")])
def test_distributed_checkpoints_load_across_backends(fused_backend, tmp_path, saved_by, loaded_by):
    source = build(saved_by, seed=1)
    target = build(loaded_by, seed=2)
    assert not torch.equal(logits(source), logits(target))
    save_model_checkpoint(source, tmp_path / "ckpt", backend=saved_by)
    load_model_checkpoint(target, tmp_path / "ckpt")
    torch.testing.assert_close(logits(target), logits(source), rtol=0, atol=0)


@pytest.mark.timeout(300)
def test_fused_checkpoint_keeps_its_extra_state(fused_backend, tmp_path):
    source = build("te", seed=1)
    source.decoder.layers[0].mlp.linear_fc1.fp8_meta = {"recipe": "delayed", "step": 7}
    save_model_checkpoint(source, tmp_path / "ckpt", backend="te")
    target = build("te", seed=2)
    load_model_checkpoint(target, tmp_path / "ckpt")
    assert target.decoder.layers[0].mlp.linear_fc1.fp8_meta == {"recipe": "delayed", "step": 7}


@pytest.mark.timeout(300)
def test_hf_export_of_a_fused_backend_checkpoint(fused_backend, tmp_path):
    from safetensors.torch import load_file

    from griffin_megatron.interop.hf import to_hf

    fused = build("te", seed=1)
    save_model_checkpoint(fused, tmp_path / "ckpt", backend="te")
    assert main(["convert", "mcore-to-hf", "--ckpt", str(tmp_path / "ckpt"),
                 "--out", str(tmp_path / "hf")]) == 0
    local = build("local", seed=2)
    load_full_state_dict(local, gather_full_state_dict(fused))
    to_hf(local, tmp_path / "hf_local")
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    reference = load_file(str(tmp_path / "hf_local" / "model.safetensors"))
    assert exported.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(exported[name], reference[name], rtol=0, atol=0, msg=name)


def test_fused_backend_cached_generation_equals_its_forward(fused_backend):
    """Prefill 30 tokens (a second document starts at 25), then one-token decode steps: each
    layer's `prefill` / `step` with IdentityOp norms and the norm inside the linears."""
    model = build("te", seed=1)
    ids, positions = inputs(model)
    cache = GriffinInferenceCache(ids.shape[0])
    with torch.inference_mode():
        cached = [forward_with_cache(model, ids[:, :30], positions[:, :30], cache)]
        cached += [decode_step(model, ids[:, t:t + 1], positions[:, t:t + 1], cache)
                   for t in range(30, ids.shape[1])]
    torch.testing.assert_close(torch.cat(cached, dim=1), logits(model), rtol=1e-5, atol=1e-5)
