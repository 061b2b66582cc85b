"""No command deletes or replaces its own input, or a directory it did not write: `convert`'s
--out never is, holds or lies inside --ckpt / --hf-dir, and --overwrite replaces only an HF export
(mcore-to-hf) or a checkpoint (hf-to-mcore). Run as a user would: the command, its exit status,
its one sentence, and every file left as it was."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from griffin_megatron import output_paths

from tests.fixtures.hf_models import make_hf_model
from tests.fixtures.word_tokenizers import numbered_tokenizer

pytestmark = pytest.mark.usefixtures("megatron_single_process")
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "griffin_megatron", *args], capture_output=True, text=True,
        env=env, timeout=600, preexec_fn=lambda: os.umask(umask),
    )


def tree(root: Path) -> dict:
    """{relative path: sha256 of the file, or "dir"} of everything under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_refused(done: subprocess.CompletedProcess, *fragments: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/g: a checkpoint (with its tokenizer) beside runs/notes.txt; hf/: an HF export."""
    from griffin_megatron.checkpoint.model import save_model_checkpoint
    from griffin_megatron.interop.hf import from_hf

    root = tmp_path_factory.mktemp("overwrite")
    hf = make_hf_model()
    hf.save_pretrained(root / "hf")
    numbered_tokenizer(hf.config.vocab_size).save(str(root / "hf" / "tokenizer.json"))
    save_model_checkpoint(from_hf(root / "hf"), root / "runs" / "g", tokenizer_dir=root / "hf")
    (root / "runs" / "notes.txt").write_text("three weeks of notes")
    return root


def test_mcore_to_hf_out_holding_the_checkpoint(runs):
    before = tree(runs)
    done = run_cli("convert", "mcore-to-hf", "--ckpt", str(runs / "runs" / "g"),
                   "--out", str(runs / "runs"), "--overwrite")
    assert_refused(done, "holds --ckpt", "which this command reads")
    assert tree(runs) == before


def test_mcore_to_hf_out_is_the_checkpoint(runs):
    before = tree(runs)
    done = run_cli("convert", "mcore-to-hf", "--ckpt", str(runs / "runs" / "g"),
                   "--out", str(runs / "runs" / "g"), "--overwrite")
    assert_refused(done, "is the same path as --ckpt")
    assert tree(runs) == before


def test_out_inside_the_input(runs):
    before = tree(runs)
    done = run_cli("convert", "mcore-to-hf", "--ckpt", str(runs / "runs" / "g"),
                   "--out", str(runs / "runs" / "g" / "hf"))
    assert_refused(done, "lies inside --ckpt")
    assert tree(runs) == before


def test_out_through_a_symlink_to_the_input(runs, tmp_path):
    (tmp_path / "link").symlink_to(runs / "hf")
    before = tree(runs)
    done = run_cli("convert", "hf-to-mcore", "--hf-dir", str(runs / "hf"),
                   "--out", str(tmp_path / "link"), "--overwrite")
    assert_refused(done, "is the same path as --hf-dir")
    assert tree(runs) == before


def test_hf_to_mcore_out_is_the_parent_of_other_checkpoints(runs, tmp_path):
    """`--out ckpts --overwrite` where ckpts/ holds two other checkpoints."""
    import shutil

    for name in ("a", "b"):
        shutil.copytree(runs / "runs" / "g", tmp_path / "ckpts" / name)
    before = tree(tmp_path)
    done = run_cli("convert", "hf-to-mcore", "--hf-dir", str(runs / "hf"),
                   "--out", str(tmp_path / "ckpts"), "--overwrite")
    assert_refused(done, "holds 2 entries that are not a griffin-megatron checkpoint (a/, b/)")
    assert tree(tmp_path) == before


def test_overwrite_never_replaces_a_foreign_directory(runs, tmp_path):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "x.csv").write_text("1,2")
    (out / "notes.txt").write_text("notes")
    (out / "config.json").write_text("{}")
    before = tree(tmp_path)
    done = run_cli("convert", "mcore-to-hf", "--ckpt", str(runs / "runs" / "g"),
                   "--out", str(out), "--overwrite")
    assert_refused(done, f"--out {out} holds 2 entries that are not an HF export "
                         "(data/, notes.txt)", "--overwrite will not replace it")
    assert tree(tmp_path) == before


def test_an_hf_directory_is_no_checkpoint_to_replace(runs):
    """hf-to-mcore --overwrite onto an HF export (the wrong kind of output)."""
    import shutil

    target = runs.parent / (runs.name + "-hf-copy")
    shutil.copytree(runs / "hf", target)
    before = tree(target)
    done = run_cli("convert", "hf-to-mcore", "--hf-dir", str(runs / "hf"),
                   "--out", str(target), "--overwrite")
    assert_refused(done, "that are not a griffin-megatron checkpoint", "config.json")
    assert tree(target) == before


def test_overwrite_replaces_an_earlier_export_with_files_that_follow_the_umask(runs, tmp_path):
    out = tmp_path / "hf-out"
    first = run_cli("convert", "mcore-to-hf", "--ckpt", str(runs / "runs" / "g"), "--out",
                    str(out))
    assert first.returncode == 0, first.stderr
    (out / "model.safetensors").write_bytes(b"stale")
    again = run_cli("convert", "mcore-to-hf", "--ckpt", str(runs / "runs" / "g"), "--out",
                    str(out), "--overwrite")
    assert again.returncode == 0, again.stderr
    assert (out / "model.safetensors").read_bytes() != b"stale"
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_overwrite_replaces_an_earlier_checkpoint(runs, tmp_path):
    import shutil

    out = tmp_path / "ckpt"
    shutil.copytree(runs / "runs" / "g", out)
    (out / "metadata.json").write_bytes(b"stale")
    done = run_cli("convert", "hf-to-mcore", "--hf-dir", str(runs / "hf"), "--out", str(out),
                   "--overwrite")
    assert done.returncode == 0, done.stderr
    assert (out / "metadata.json").read_bytes() != b"stale"
    assert (out / "griffin_model.json").is_file()


def test_a_training_save_directory_counts_as_a_checkpoint(tmp_path):
    save = tmp_path / "save"
    (save / "iter_0000002").mkdir(parents=True)
    for name in ("griffin_model.json", ".metadata", "__0_0.distcp", "common.pt"):
        (save / "iter_0000002" / name).write_text("")
    (save / "latest_checkpointed_iteration.txt").write_text("2\n")
    kind = output_paths.CHECKPOINT
    assert kind.foreign_entries(save) == []
    (save / "iter_0000002" / "notes.txt").write_text("")
    assert kind.foreign_entries(save) == ["iter_0000002/"]


def test_the_kinds_use_the_names_the_checkpoint_package_writes():
    from griffin_megatron.checkpoint.atomic import STAGING_INFIX
    from griffin_megatron.checkpoint.lock import LOCK_FILE
    from griffin_megatron.checkpoint.record import LATEST_FILE, MODEL_RECORD
    from griffin_megatron.checkpoint.tokenizer_files import TOKENIZER_FILES

    assert output_paths.TOKENIZER_FILES == TOKENIZER_FILES
    kind = output_paths.CHECKPOINT
    assert {MODEL_RECORD, LATEST_FILE, LOCK_FILE} <= set(kind.files)
    assert f".*{STAGING_INFIX}*" in kind.folders


def test_preprocess_never_writes_over_its_input(tmp_path):
    corpus = tmp_path / "corpus.idx"
    corpus.write_text('{"text": "hello"}\n')
    done = run_cli("preprocess", "--input", str(corpus), "--output-prefix",
                   str(tmp_path / "corpus"), "--overwrite")
    assert_refused(done, "is the same path as --input")
    assert corpus.read_text() == '{"text": "hello"}\n'
