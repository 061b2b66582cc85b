"""Checkpoints written on megatron-core 0.19 (tests/data/mcore019, made by its make_fixtures.py)
opened on the installed release: the same test runs in both CI legs.

0.19 keeps a checkpoint's common state inside the torch_dist files; 0.16 looked only for
common.pt and failed with `AttributeError: 'str' object has no attribute 'iterdir'`. A model
checkpoint now converts on every release, tensor for tensor what torch's own checkpoint reader
finds in the files; a pretrain() checkpoint, whose Megatron-LM arguments name classes 0.16
lacks, converts on 0.19 and is refused on older releases in one sentence naming the way across.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from griffin_megatron.compat import megatron_core_version

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "data" / "mcore019"


def convert_to_hf(ckpt: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "griffin_megatron", "convert", "mcore-to-hf", "--ckpt", str(ckpt),
         "--out", str(out)], capture_output=True, text=True, env=env, timeout=600,
    )


def tensors_in_files(directory: Path) -> dict:
    """Every tensor of a torch_dist checkpoint, read by torch's checkpoint reader alone."""
    from torch.distributed.checkpoint import FileSystemReader, load

    metadata = FileSystemReader(str(directory)).read_metadata()
    state = {
        key: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.state_dict_metadata.items()
        if hasattr(meta, "size") and not key.endswith("_extra_state")
    }
    load(state, storage_reader=FileSystemReader(str(directory)), no_dist=True)
    return state


def test_a_019_model_checkpoint_converts_here(tmp_path):
    from safetensors.torch import load_file

    from griffin_megatron.checkpoint.record import config_from_record, read_model_record
    from griffin_megatron.interop.hf_mapping import megatron_to_hf

    done = convert_to_hf(FIXTURES / "model", tmp_path / "hf")
    assert done.returncode == 0, done.stderr[-3000:]
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    config = config_from_record(read_model_record(FIXTURES / "model"))
    expected = megatron_to_hf(tensors_in_files(FIXTURES / "model"), config)
    assert sorted(exported) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(exported[name], tensor), name


def test_a_019_pretrain_checkpoint(tmp_path):
    done = convert_to_hf(FIXTURES / "pretrain", tmp_path / "hf")
    if megatron_core_version() >= (0, 19):
        assert done.returncode == 0, done.stderr[-3000:]
        assert (tmp_path / "hf" / "model.safetensors").is_file()
        return
    err = done.stderr.strip()
    assert done.returncode == 2, err[-3000:]
    assert len(err.splitlines()) == 1, err
    installed = ".".join(map(str, megatron_core_version()))
    for fragment in ("was written by a newer megatron-core (0.19", f"megatron-core {installed} "
                     "cannot read", "convert mcore-to-hf", "under megatron-core >= 0.19"):
        assert fragment in err, err
    assert not (tmp_path / "hf").exists()


@pytest.mark.skipif(megatron_core_version() >= (0, 19), reason="0.19 reads both forms")
def test_the_bug_is_real_on_this_release():
    """What the compat reader is for: this release's own loader on a 0.19 checkpoint."""
    from megatron.core import dist_checkpointing

    with pytest.raises(AttributeError, match="'str' object has no attribute 'iterdir'"):
        dist_checkpointing.load_common_state_dict(str(FIXTURES / "model"))
