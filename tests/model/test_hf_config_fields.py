"""Every field of an HF RecurrentGemma config.json is honoured or refused by name
(interop/hf_config.py). Honoured fields: transformers' own loss on the same tokens against the
converted checkpoint's (rebuilt from its record alone), and written back by the export.
Refused fields: `convert hf-to-mcore` as a user runs it, one sentence naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import RecurrentGemmaForCausalLM
from transformers.activations import ACT2FN

from griffin_megatron.cli.main import main
from griffin_megatron.config import ACTIVATIONS

from tests.fixtures.hf_models import make_hf_model

pytestmark = pytest.mark.usefixtures("megatron_single_process")
REPO = Path(__file__).resolve().parents[2]
TOKENS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(5))


def hf_loss(model: RecurrentGemmaForCausalLM, soft_cap: bool = True) -> float:
    """transformers' causal-LM loss on TOKENS; without its soft cap when soft_cap is False (the
    logits of transformers' own lm_head, which always caps otherwise)."""
    with torch.no_grad():
        if soft_cap:
            return model(TOKENS, labels=TOKENS, use_cache=False).loss.item()
        hidden = model.model(TOKENS, use_cache=False).last_hidden_state
        logits = model.lm_head(hidden)[:, :-1]
        labels = TOKENS[:, 1:].reshape(-1)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels).item()


def our_loss(checkpoint: Path) -> float:
    from griffin_megatron.checkpoint.model import build_model_from_checkpoint

    model = build_model_from_checkpoint(checkpoint).eval()
    positions = torch.arange(TOKENS.shape[1] - 1).expand(TOKENS.shape[0], -1)
    with torch.no_grad():
        return model(TOKENS[:, :-1], positions, labels=TOKENS[:, 1:]).mean().item()


def save_hf(directory: Path, model: RecurrentGemmaForCausalLM, **edits) -> Path:
    """save_pretrained, then config.json fields set (None: written as null) or removed (...)."""
    model.save_pretrained(directory)
    path = directory / "config.json"
    fields = json.loads(path.read_text())
    for name, value in edits.items():
        if value is ...:
            fields.pop(name, None)
        else:
            fields[name] = value
    path.write_text(json.dumps(fields))
    return directory


def untied_model(std: float = 0.05) -> RecurrentGemmaForCausalLM:
    model = make_hf_model(tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(3))
    return model


BASELINE = hf_loss(make_hf_model())
HONOURED = [
    pytest.param(lambda: make_hf_model(hidden_activation="relu"), {}, True, id="relu"),
    pytest.param(lambda: make_hf_model(hidden_activation="silu"), {}, True, id="silu"),
    pytest.param(untied_model, {}, True, id="untied-lm-head"),
    pytest.param(lambda: make_hf_model(partial_rotary_factor=0.25), {}, True, id="rope-0.25"),
    pytest.param(lambda: make_hf_model(partial_rotary_factor=1.0), {}, True, id="rope-1.0"),
    pytest.param(lambda: make_hf_model(attention_window_size=3), {}, True, id="window-3"),
    # Logits of tens, where the cap of 30 bends them: its absence shows in the loss.
    pytest.param(lambda: untied_model(std=3.0), {"logits_soft_cap": None}, False,
                 id="soft-cap-null"),
    # transformers' own config validation refuses an integer cap; the model means 30.0.
    pytest.param(lambda: make_hf_model(logits_soft_cap=5.0), {"logits_soft_cap": 5}, True,
                 id="soft-cap-int"),
]


@pytest.mark.parametrize("build, edits, capped", HONOURED)
def test_honoured_field_gives_transformers_loss_and_is_written_back(tmp_path, build, edits,
                                                                    capped):
    hf = build()
    expected = hf_loss(hf, soft_cap=capped)
    # The field changes the model, so ignoring it would show: against the default model, or
    # for the missing cap against the same model capped.
    assert abs(expected - (BASELINE if capped else hf_loss(hf))) > 1e-3
    save_hf(tmp_path / "hf", hf, **edits)
    assert main(["convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "hf"), "--out",
                 str(tmp_path / "ckpt")]) == 0
    ours = our_loss(tmp_path / "ckpt")
    assert abs(ours - expected) <= 1e-5 * abs(expected), (ours, expected)
    if not capped:
        return  # transformers has no uncapped model to export to (its config refuses null)
    assert main(["convert", "mcore-to-hf", "--ckpt", str(tmp_path / "ckpt"), "--out",
                 str(tmp_path / "hf2")]) == 0
    again = RecurrentGemmaForCausalLM.from_pretrained(tmp_path / "hf2").eval()
    written, given = again.config.to_dict(), hf.config.to_dict()
    for name in ("hidden_activation", "tie_word_embeddings", "rope_parameters",
                 "attention_window_size", "logits_soft_cap"):
        assert written[name] == given[name], name
    assert abs(hf_loss(again) - expected) <= 1e-5 * abs(expected)


def test_each_activation_computes_what_transformers_does():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    for name, function in ACTIVATIONS.items():
        assert torch.equal(function(x), ACT2FN[name](x)), name


def test_a_config_without_its_optional_fields_takes_transformers_defaults(tmp_path):
    """Fields missing from config.json (older releases wrote fewer) mean transformers' defaults;
    the fields older releases wrote (top-level rope_theta / partial_rotary_factor, torch_dtype,
    embeddings_scale_by_sqrt_dim, head_dim) mean what the current ones do."""
    from griffin_megatron.interop.hf_config import architecture_from_hf_config

    hf = make_hf_model(partial_rotary_factor=0.25)
    fields = json.loads(save_hf(tmp_path / "hf", hf).joinpath("config.json").read_text())
    legacy = {k: v for k, v in fields.items() if k not in ("rope_parameters", "hidden_activation",
                                                           "tie_word_embeddings")}
    legacy.update(rope_theta=10000.0, partial_rotary_factor=0.25, torch_dtype="float32",
                  embeddings_scale_by_sqrt_dim=True, head_dim=16)
    assert architecture_from_hf_config(legacy) == architecture_from_hf_config(hf.config)


def run_convert(hf_dir: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "griffin_megatron", "convert", "hf-to-mcore", "--hf-dir",
         str(hf_dir), "--out", str(out)], capture_output=True, text=True, env=env, timeout=600,
    )


REFUSED = [
    pytest.param({"rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                      "rope_theta": 10000.0, "partial_rotary_factor": 0.5}},
                 "rope_parameters.rope_type='linear'", id="rope-type-linear"),
    pytest.param({"rope_scaling": {"type": "linear", "factor": 2.0}},
                 "rope_scaling={'type': 'linear', 'factor': 2.0}", id="rope-scaling"),
    pytest.param({"num_hidden_layers": 4}, "num_hidden_layers=4 but the weights hold 3 layers",
                 id="layer-count"),
    pytest.param({"block_types": ["recurrent", "attention", "attention"]},
                 "make layer 1 a attention block but the weights hold a recurrent block",
                 id="block-types"),
    pytest.param({"hidden_activation": "tanh"}, "hidden_activation='tanh'", id="activation"),
    pytest.param({"attention_bias": True}, "attention_bias=True", id="attention-bias"),
    pytest.param({"tie_word_embeddings": False}, "tie_word_embeddings=false but the weights "
                 "hold no lm_head.weight", id="untied-without-lm-head"),
    pytest.param({"head_dim": 32}, "head_dim=32", id="head-dim"),
    pytest.param({"rotary_scaling_factor": 4}, "rotary_scaling_factor=4, which transformers' "
                 "RecurrentGemmaConfig does not define", id="unknown-field"),
]


@pytest.mark.parametrize("edits, fragment", REFUSED)
def test_refused_field_is_named(tmp_path, capsys, edits, fragment):
    hf_dir = save_hf(tmp_path / "hf", make_hf_model(), **edits)
    capsys.readouterr()
    code = main(["convert", "hf-to-mcore", "--hf-dir", str(hf_dir), "--out",
                 str(tmp_path / "ckpt")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_rope_scaling_refused_by_the_command(tmp_path):
    """One of the cases above as a user meets it: the command in its own process."""
    edits, fragment = REFUSED[0].values
    hf_dir = save_hf(tmp_path / "hf", make_hf_model(), **edits)
    done = run_convert(hf_dir, tmp_path / "ckpt")
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
