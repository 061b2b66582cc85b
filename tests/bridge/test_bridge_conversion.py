"""HF RecurrentGemma -> Megatron (GriffinModel) -> HF through Megatron Bridge's AutoBridge, at
tensor-parallel sizes 1 and 2 (gloo), for a Griffin, a Hawk and an untied Griffin with a relu MLP: every exported tensor equals the
HF original and the Megatron logits equal HF's. Each size is one launch of workers that import
Bridge (tests/bridge/bridge_worker.py); the references are the HF models in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.bridge.bridge_worker import round_trips
from tests.fixtures.hf_models import GRIFFIN, HAWK, hf_logits, make_hf_model, relative_error
from tests.parallel.harness import launch

ARCHITECTURES = {
    "griffin": GRIFFIN,
    "hawk": HAWK,
    # config.json fields beyond the defaults that the converter honours (interop/hf_config.py):
    # its own lm_head (Megatron's untied output layer) and another MLP activation.
    "griffin-untied-relu": dict(GRIFFIN, tie_word_embeddings=False, hidden_activation="relu"),
}
MEASURED = {}


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    models = {}
    for name, shape in ARCHITECTURES.items():
        model = make_hf_model(**shape)
        model.save_pretrained(root / name)
        models[name] = (model, root / name)
    return models


@pytest.fixture(scope="module")
def tokens():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 300, (2, 24), generator=generator)
    # One document per row: HF's Conv1D does not reset at document starts (design.md section 2).
    return input_ids, torch.arange(24).expand(2, -1).contiguous()


@pytest.fixture(scope="module", params=[1, 2], ids=["tp1", "tp2"])
def converted(request, hf_models, tokens, tmp_path_factory):
    tp = request.param
    out = tmp_path_factory.mktemp(f"bridge-tp{tp}")
    cases = [(name, str(directory), str(out / name)) for name, (_, directory) in hf_models.items()]
    results = launch(round_trips, tp, cases, tp, *tokens)
    return tp, out, results[0]


def test_bridge_lists_recurrent_gemma(converted):
    assert "RecurrentGemmaForCausalLM" in converted[2]["supported"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bridge_builds_griffin_models(converted, arch):
    assert converted[2][arch]["provider"] == "GriffinModelProvider"
    assert converted[2][arch]["model"] == "GriffinModel"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_logits_match_hf(converted, arch, hf_models, tokens):
    tp, _, results = converted
    expected = hf_logits(hf_models[arch][0], *tokens)
    error = relative_error(results[arch]["logits"], expected)
    MEASURED[(arch, tp, "logits rel")] = error
    assert error < 1e-5


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_tensor_comes_back_identical(converted, arch, hf_models):
    tp, out, _ = converted
    original = load_file(str(Path(hf_models[arch][1]) / "model.safetensors"))
    exported = load_file(str(out / arch / "model.safetensors"))
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype, name
        assert torch.equal(exported[name], tensor), name
    MEASURED[(arch, tp, "tensors identical")] = len(original)
