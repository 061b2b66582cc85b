"""GriffinModel against HF RecurrentGemmaForCausalLM with identical weights (the released math)."""

from __future__ import annotations

import json

import pytest
import torch
from megatron.core.packed_seq_params import PackedSeqParams
from transformers import RecurrentGemmaForCausalLM

from griffin_megatron.interop.hf import from_hf, to_hf

from tests.fixtures.hf_models import GRIFFIN, HAWK, hf_logits, make_hf_model, relative_error

pytestmark = pytest.mark.usefixtures("megatron_single_process")

CASES = [
    pytest.param(dict(), id="griffin-mqa-lru96-window8"),
    pytest.param(dict(num_key_value_heads=2), id="griffin-gqa2"),
    pytest.param(dict(lru_width=64), id="griffin-lru-equals-width"),
    pytest.param(dict(**HAWK), id="hawk"),
    pytest.param(dict(**GRIFFIN, attention_window_size=64), id="griffin-window-longer-than-seq"),
]
SEQ = 40


def _ours(model, input_ids, position_ids=None, **kwargs) -> torch.Tensor:
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[1]).expand_as(input_ids)
    with torch.no_grad():
        return model(input_ids, position_ids, **kwargs)


@pytest.mark.parametrize("hf_kwargs", CASES)
def test_fp32_logits_match_hf(hf_kwargs):
    hf = make_hf_model(**hf_kwargs)
    ours = from_hf(hf)
    input_ids = torch.randint(0, hf.config.vocab_size, (2, SEQ))
    error = relative_error(_ours(ours, input_ids), hf_logits(hf, input_ids))
    assert error <= 1e-5, error


@pytest.mark.parametrize("hf_kwargs", [CASES[0], CASES[3]])
def test_bf16_logits_within_bf16_tolerance(hf_kwargs):
    hf = make_hf_model(**hf_kwargs)
    input_ids = torch.randint(0, hf.config.vocab_size, (2, SEQ))
    reference = hf_logits(hf, input_ids)  # fp32
    ours_bf16 = from_hf(hf, params_dtype=torch.bfloat16)
    hf_bf16 = make_hf_model(**hf_kwargs).to(torch.bfloat16)
    ours_error = relative_error(_ours(ours_bf16, input_ids), reference)
    hf_error = relative_error(hf_logits(hf_bf16, input_ids), reference)
    # Our bf16 model must be about as close to the fp32 math as HF's own bf16 model is.
    assert ours_error <= max(2.0 * hf_error, 1e-2), (ours_error, hf_error)
    assert ours_error <= 3e-2, ours_error


def _documents(vocab: int, lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=generator) for n in lengths]


@pytest.mark.parametrize("hf_kwargs", [CASES[0], CASES[3]])
def test_packed_documents_equal_separate_runs(hf_kwargs):
    """Restarting position ids must isolate documents in conv taps, RG-LRU state and attention.

    HF itself cannot be the reference for packed rows: its Conv1D lets the last 3 tokens of a
    document leak into the next. The reference is HF run on each document alone (the math of
    design.md), compared with our packed rows.
    """
    hf = make_hf_model(**hf_kwargs)
    ours = from_hf(hf)
    rows = [[13, 1, 20, 6], [3, 37]]
    input_rows, position_rows, expected_rows = [], [], []
    for i, lengths in enumerate(rows):
        docs = _documents(hf.config.vocab_size, lengths, seed=i)
        input_rows.append(torch.cat(docs))
        position_rows.append(torch.cat([torch.arange(len(d)) for d in docs]))
        expected_rows.append(torch.cat([hf_logits(hf, d.unsqueeze(0))[0] for d in docs]))
    logits = _ours(ours, torch.stack(input_rows), torch.stack(position_rows))
    error = relative_error(logits, torch.stack(expected_rows))
    assert error <= 1e-5, error


def test_megatron_thd_packed_sequences_equal_separate_runs():
    hf = make_hf_model()
    ours = from_hf(hf)
    lengths = [13, 1, 20, 6]
    docs = _documents(hf.config.vocab_size, lengths, seed=3)
    cu = torch.tensor([0, 13, 14, 34, 40], dtype=torch.int32)
    packed = PackedSeqParams(
        qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=20, max_seqlen_kv=20
    )
    input_ids = torch.cat(docs).unsqueeze(0)
    logits = _ours(ours, input_ids, packed_seq_params=packed)
    expected = torch.cat([hf_logits(hf, d.unsqueeze(0))[0] for d in docs]).unsqueeze(0)
    assert relative_error(logits, expected) <= 1e-5


def test_hf_to_ours_to_hf_round_trip_is_bit_exact(tmp_path):
    hf = make_hf_model(num_key_value_heads=2)
    hf.save_pretrained(tmp_path / "original")
    ours = from_hf(tmp_path / "original")
    to_hf(ours, tmp_path / "exported")
    again = RecurrentGemmaForCausalLM.from_pretrained(tmp_path / "exported").eval()
    original, exported = hf.state_dict(), again.state_dict()
    assert original.keys() == exported.keys()
    for name, tensor in original.items():
        assert torch.equal(tensor, exported[name]), name
    # The model class that transformers' Auto classes and Megatron Bridge's AutoBridge pick.
    written = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert written["architectures"] == ["RecurrentGemmaForCausalLM"]
    input_ids = torch.randint(0, hf.config.vocab_size, (1, 12))
    assert torch.equal(hf_logits(hf, input_ids), hf_logits(again, input_ids))


def test_exported_model_generates_like_the_original(tmp_path):
    from transformers import AutoModelForCausalLM

    hf = make_hf_model()
    to_hf(from_hf(hf), tmp_path / "exported")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    prompt = torch.randint(0, hf.config.vocab_size, (1, 5))
    kwargs = dict(max_new_tokens=6, do_sample=False)
    assert torch.equal(hf.generate(prompt, **kwargs), again.generate(prompt, **kwargs))


def test_loaded_models_know_how_their_weights_are_split(tmp_path):
    """Gradient-norm reduction and TP gathers read each weight's tensor-parallel attributes,
    which Megatron sets only on its initialisation path: loaded models must still have them."""
    from griffin_megatron.checkpoint.model import build_model_from_checkpoint, save_model_checkpoint

    model = from_hf(make_hf_model())
    save_model_checkpoint(model, tmp_path / "ckpt")
    for loaded in (model, build_model_from_checkpoint(tmp_path / "ckpt")):
        split = {name for name, p in loaded.named_parameters()
                 if getattr(p, "tensor_model_parallel", False)}
        assert "decoder.layers.2.self_attention.linear_qkv.weight" in split
        assert "decoder.layers.0.self_attention.linear_in.weight" in split
        assert "decoder.layers.0.mlp.linear_fc2.weight" in split
        assert "embedding.word_embeddings.weight" in split
        assert "decoder.layers.0.input_layernorm.weight" not in split
