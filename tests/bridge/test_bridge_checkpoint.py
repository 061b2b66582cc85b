"""A checkpoint written by `griffin-megatron train` opens through Megatron Bridge (a provider
from its architecture, our checkpoint loader filling the model Bridge built) and Bridge's
save_hf_pretrained writes the same HF checkpoint as our `convert mcore-to-hf`: same tensors,
bit for bit, and the same architecture in config.json."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from griffin_megatron.interop.hf_config import architecture_from_hf_config
from tests.bridge.bridge_worker import export_training_checkpoint
from tests.fixtures.corpus import documents, write_jsonl
from tests.parallel.harness import launch
from tests.training.harness import TINY, run_cli, run_train


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from griffin_megatron.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("bridge-checkpoint")
    write_jsonl(root / "docs.jsonl", documents(200))
    prefix = preprocess([str(root / "docs.jsonl")], root / "data" / "corpus", vocab_size=320).prefix
    done = run_train([*TINY, "--data-path", str(prefix), "--train-iters", "2",
                      "--save", str(root / "ckpt")], cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli(["convert", "mcore-to-hf", "--ckpt", str(root / "ckpt"), "--out",
                    str(root / "ours")], cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    names = launch(export_training_checkpoint, 1, str(root / "ckpt"), str(root / "bridge"))[0]
    return root / "ours", root / "bridge", names


def test_bridge_builds_a_griffin_model_for_the_checkpoint(exports):
    assert exports[2] == ["GriffinModelProvider", "GriffinModel"]


def test_bridge_export_equals_convert_mcore_to_hf(exports):
    ours, bridge, _ = exports
    expected = load_file(str(ours / "model.safetensors"))
    exported = load_file(str(bridge / "model.safetensors"))
    assert sorted(exported) == sorted(expected)
    for name, tensor in expected.items():
        assert exported[name].dtype == tensor.dtype, name
        assert torch.equal(exported[name], tensor), name


def test_bridge_export_has_the_same_architecture(exports):
    ours, bridge, _ = exports
    expected = AutoConfig.from_pretrained(ours, local_files_only=True)
    exported = AutoConfig.from_pretrained(bridge, local_files_only=True)
    assert architecture_from_hf_config(exported) == architecture_from_hf_config(expected)
