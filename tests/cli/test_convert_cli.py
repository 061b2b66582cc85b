"""`griffin-megatron convert` and `info`: round trips, and one sentence per bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import RecurrentGemmaForCausalLM

from griffin_megatron.cli.main import main
from griffin_megatron.presets import count_parameters, get_preset

from tests.fixtures.hf_models import make_hf_model
from tests.fixtures.word_tokenizers import numbered_tokenizer

pytestmark = pytest.mark.usefixtures("megatron_single_process")
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "griffin_megatron", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _save_tiny_hf(directory: Path) -> RecurrentGemmaForCausalLM:
    model = make_hf_model(num_key_value_heads=2)
    model.save_pretrained(directory)
    numbered_tokenizer(model.config.vocab_size).save(str(directory / "tokenizer.json"))
    return model


def test_hf_to_mcore_to_hf_round_trip_through_the_command(tmp_path):
    original = _save_tiny_hf(tmp_path / "hf")
    done = run_cli("convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "hf"), "--out",
                   str(tmp_path / "ckpt"))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "ckpt" / "griffin_model.json").read_text())
    assert record["architecture"]["block_pattern"] == "RRA"
    assert (tmp_path / "ckpt" / "tokenizer.json").is_file()

    done = run_cli("convert", "mcore-to-hf", "--ckpt", str(tmp_path / "ckpt"), "--out",
                   str(tmp_path / "hf2"))
    assert done.returncode == 0, done.stderr
    again = RecurrentGemmaForCausalLM.from_pretrained(tmp_path / "hf2")
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert (tmp_path / "hf2" / "tokenizer.json").is_file()


def test_info_prints_the_meta_device_count(capsys):
    assert main(["info", "--preset", "griffin-tiny"]) == 0
    total = count_parameters(get_preset("griffin-tiny"))
    assert f"{total:,}" in capsys.readouterr().out


def _expect_user_error(capsys, argv, fragment):
    capsys.readouterr()  # drop what the test's own setup printed
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert fragment in err, err
    assert len(err.splitlines()) == 1, err


def test_missing_hf_directory(tmp_path, capsys):
    out = tmp_path / "ckpt"
    _expect_user_error(
        capsys,
        ["convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "nope"), "--out", str(out)],
        "is not an HF model directory (no config.json)",
    )
    assert not out.exists()


def test_hf_directory_without_weights(tmp_path, capsys):
    make_hf_model().config.save_pretrained(tmp_path / "hf")
    _expect_user_error(
        capsys,
        ["convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "c")],
        "no weights in",
    )
    assert not (tmp_path / "c").exists()


def test_other_model_type_is_refused(tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    _expect_user_error(
        capsys,
        ["convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "c")],
        "only RecurrentGemma",
    )


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    _save_tiny_hf(tmp_path / "hf")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "keep.txt").write_text("precious")
    _expect_user_error(
        capsys,
        ["convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt")],
        "already exists and is not empty",
    )
    assert (tmp_path / "ckpt" / "keep.txt").read_text() == "precious"


def test_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "junk").mkdir()
    _expect_user_error(
        capsys,
        ["convert", "mcore-to-hf", "--ckpt", str(tmp_path / "junk"), "--out", str(tmp_path / "h")],
        "is not a griffin-megatron checkpoint",
    )
    assert not (tmp_path / "h").exists()


def test_unknown_preset(capsys):
    _expect_user_error(capsys, ["info", "--preset", "griffin-15b"], "unknown preset 'griffin-15b'")


def test_unexportable_architecture_is_explained(tmp_path, capsys):
    from griffin_megatron.checkpoint.model import save_model_checkpoint
    from griffin_megatron.model import GriffinModel

    config = get_preset("griffin-tiny", rglru_num_heads=2, use_cpu_initialization=True)
    save_model_checkpoint(GriffinModel(config), tmp_path / "ckpt")
    _expect_user_error(
        capsys,
        ["convert", "mcore-to-hf", "--ckpt", str(tmp_path / "ckpt"), "--out", str(tmp_path / "h")],
        "rglru_num_heads=2 differs from num_attention_heads=4",
    )
    assert not (tmp_path / "h").exists()


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import safetensors.torch

    from griffin_megatron.interop.hf import from_hf, to_hf

    model = from_hf(make_hf_model())

    def crash(state, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError):
        to_hf(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failed_checkpoint_save_leaves_nothing_behind(tmp_path, monkeypatch):
    from megatron.core import dist_checkpointing

    from griffin_megatron.checkpoint.model import save_model_checkpoint
    from griffin_megatron.model import GriffinModel

    model = GriffinModel(get_preset("hawk-tiny", use_cpu_initialization=True))

    def crash(state, directory, *args, **kwargs):
        (Path(directory) / "__0_0.distcp").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(dist_checkpointing, "save", crash)
    with pytest.raises(OSError):
        save_model_checkpoint(model, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_mcore_to_hf_finds_the_checkpoint_and_reads_its_record_once(tmp_path, monkeypatch):
    """A save directory is resolved through its `latest` pointer, and the record read, once per
    conversion: counted as looks for and reads of those two files."""
    from griffin_megatron.checkpoint.record import LATEST_FILE, MODEL_RECORD

    _save_tiny_hf(tmp_path / "hf")
    save = tmp_path / "save"
    save.mkdir()
    assert main(["convert", "hf-to-mcore", "--hf-dir", str(tmp_path / "hf"), "--out",
                 str(save / "iter_0000003")]) == 0
    (save / LATEST_FILE).write_text("3\n")
    reads = []
    for method in ("read_text", "read_bytes", "is_file"):
        original = getattr(Path, method)

        def counted(self, *args, _original=original, **kwargs):
            reads.append(self.name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Path, method, counted)
    assert main(["convert", "mcore-to-hf", "--ckpt", str(save), "--out",
                 str(tmp_path / "hf2")]) == 0
    # LATEST_FILE: looked for once, read once; MODEL_RECORD: looked for once, read once.
    assert (reads.count(LATEST_FILE), reads.count(MODEL_RECORD)) == (2, 2)
    assert (tmp_path / "hf2" / "tokenizer.json").is_file()  # found beside iter_0000003
