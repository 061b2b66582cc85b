"""A checkpoint whose saved tokenizer files are gone: `generate` asks for --tokenizer, and with
it loads (the weights never needed the tokenizer) and says which tokenizer it uses; a tokenizer
missing only some of its recorded files is refused, a damaged one too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.checkpoints import write_hf_dir
from tests.fixtures.word_tokenizers import PROMPT

pytestmark = pytest.mark.usefixtures("megatron_single_process")
REPO = Path(__file__).resolve().parents[2]


def generate(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "griffin_megatron", "generate", "--prompt", PROMPT,
         "--max-new-tokens", "3", "--ignore-eos", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(HF directory with tokenizer.json and tokenizer_config.json, checkpoint converted from
    it, which saved both tokenizer files and recorded them)."""
    from griffin_megatron.checkpoint.model import save_model_checkpoint
    from griffin_megatron.interop.hf import from_hf

    root = tmp_path_factory.mktemp("tokenizer-gone")
    write_hf_dir(root / "hf", bare_tokenizer=True, num_hidden_layers=2,
                 block_types=["recurrent", "attention"])
    (root / "hf" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>"}))
    save_model_checkpoint(from_hf(root / "hf"), root / "ckpt", tokenizer_dir=root / "hf")
    record = json.loads((root / "ckpt" / "griffin_model.json").read_text())
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(record["files"])
    return root


def test_all_tokenizer_files_gone_then_tokenizer_given(saved, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(saved / "ckpt", ckpt)
    (ckpt / "tokenizer.json").unlink()
    (ckpt / "tokenizer_config.json").unlink()
    refused = generate("--load", str(ckpt))
    assert refused.returncode == 2, refused.stderr
    assert "pass --tokenizer DIR" in refused.stderr
    done = generate("--load", str(ckpt), "--tokenizer", str(saved / "hf"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(PROMPT)
    assert f"tokenizer: {saved / 'hf'} (--tokenizer)" in done.stderr


def test_some_recorded_tokenizer_files_gone(saved, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(saved / "ckpt", ckpt)
    (ckpt / "tokenizer.json").unlink()
    refused = generate("--load", str(ckpt))
    assert refused.returncode == 2, refused.stderr
    err = refused.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "lacks tokenizer.json, which was saved with the checkpoint" in err
    assert generate("--load", str(ckpt), "--tokenizer", str(saved / "hf")).returncode == 0


def test_a_damaged_tokenizer_file_is_still_refused(saved, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(saved / "ckpt", ckpt)
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<pad>"}) + " ")
    refused = generate("--load", str(ckpt), "--tokenizer", str(saved / "hf"))
    assert refused.returncode == 2, refused.stderr
    assert "tokenizer_config.json has" in refused.stderr
