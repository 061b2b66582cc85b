"""`evaluate` as a user meets it (a subprocess: exit status, the one sentence on stderr, the files
left behind) on inputs that used to hang it, lose a run's results or end in a traceback:

- two runs into one --output-dir: the second is refused, or with --overwrite replaces both files
  (an earlier plot never stays beside a new JSON); files follow the umask;
- an --output-dir that cannot be created (under /sys) is refused before the model loads;
- `--split-name train` on a dataset of 1 or 8 documents (Megatron's dataset builder looped
  forever on the empty validation split) gets train's per-split sentence;
- --text-files that are not UTF-8 (Latin-1, binary) get a sentence naming the file;
- --hf-dir given a Megatron checkpoint points at --load.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from griffin_megatron.cli.main import main

from tests.fixtures.checkpoints import write_hf_and_checkpoint
from tests.fixtures.word_tokenizers import random_text

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # a hang is a failure, not a stuck CI job


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_hf_and_checkpoint(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "doc.txt"
    path.write_text(random_text(120, seed=3))
    return path


def _evaluate(*args, cwd, umask=None):
    def set_umask():
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        [sys.executable, "-m", "griffin_megatron", "evaluate", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT, preexec_fn=set_umask,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1",
             "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )


def _one_sentence(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "sequence 1" not in result.stdout  # refused before any evaluation
    return lines[0]


def test_a_second_run_is_refused_and_overwrite_replaces_both_files(models, text, tmp_path):
    _, ckpt = models
    out = tmp_path / "out"
    common = ["--load", ckpt, "--text-files", text, "--seq-length", "32", "--output-dir", out]
    assert main(["evaluate", *map(str, common)]) == 0  # the first run: JSON and plot
    first = json.loads((out / "evaluation.json").read_text())
    plot = (out / "evaluation.png").read_bytes()

    again = _evaluate(*common, "--seq-length", "64", "--no-plot", cwd=tmp_path)
    _one_sentence(again, "--overwrite", "evaluation.json and evaluation.png")
    assert json.loads((out / "evaluation.json").read_text()) == first
    assert (out / "evaluation.png").read_bytes() == plot

    replaced = _evaluate(*common, "--seq-length", "64", "--no-plot", "--overwrite",
                         cwd=tmp_path, umask=0o022)
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json"]  # the old plot is gone
    assert json.loads((out / "evaluation.json").read_text())["settings"]["seq_length"] == 64
    assert (out / "evaluation.json").stat().st_mode & 0o777 == 0o644
    assert out.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left beside it


def test_overwrite_never_replaces_a_directory_of_other_files(models, text, tmp_path):
    _, ckpt = models
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = _evaluate("--load", ckpt, "--text-files", text, "--seq-length", "32",
                     "--output-dir", out, "--no-plot", "--overwrite", cwd=tmp_path)
    _one_sentence(done, "notes.txt", "evaluate did not write")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_output_dir_inside_the_checkpoint_is_refused(models, text, tmp_path):
    """The --overwrite rule of every command: an output never is, holds or lies inside an input."""
    _, ckpt = models
    before = sorted(p.name for p in ckpt.iterdir())
    done = _evaluate("--load", ckpt, "--text-files", text, "--seq-length", "32",
                     "--output-dir", ckpt / "results", "--no-plot", "--overwrite", cwd=tmp_path)
    _one_sentence(done, "--output-dir", "lies inside --load")
    assert sorted(p.name for p in ckpt.iterdir()) == before


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")
def test_output_dir_that_cannot_be_created(models, text, tmp_path):
    _, ckpt = models
    done = _evaluate("--load", ckpt, "--text-files", text, "--seq-length", "32",
                     "--output-dir", "/sys/griffin-evaluation", cwd=tmp_path)
    _one_sentence(done, "--output-dir /sys/griffin-evaluation", "cannot be written")
    assert not Path("/sys/griffin-evaluation").exists()
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def small_datasets(models, tmp_path_factory):
    hf_dir, _ = models
    root = tmp_path_factory.mktemp("small")
    prefixes = {}
    for count in (1, 8):
        docs = []
        for i in range(count):
            path = root / f"{count}-{i}.txt"
            path.write_text(random_text(40, seed=i))
            docs.append(str(path))
        prefix = root / f"docs{count}" / "docs"
        assert main(["preprocess", "--input", *docs, "--output-prefix", str(prefix),
                     "--tokenizer", str(hf_dir / "tokenizer.json"), "--workers", "1"]) == 0
        prefixes[count] = prefix
    return prefixes


@pytest.mark.parametrize("documents", [1, 8])
def test_too_few_documents_for_the_split(documents, models, small_datasets, tmp_path):
    _, ckpt = models
    done = _evaluate("--load", ckpt, "--data-path", small_datasets[documents], "--split-name",
                     "train", "--seq-length", "16", "--no-plot", "--output-dir", tmp_path / "out",
                     "--data-cache-path", tmp_path / "cache", cwd=tmp_path)
    _one_sentence(done, f"has {documents} document", "--split 95,5,0",
                  "the validation split is empty")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("content", [
    pytest.param("café au lait".encode("latin-1"), id="latin-1"),
    pytest.param(bytes(range(256)), id="binary"),
])
def test_text_file_that_is_not_utf8(content, models, tmp_path):
    _, ckpt = models
    bad = tmp_path / "book.txt"
    bad.write_bytes(content)
    done = _evaluate("--load", ckpt, "--text-files", bad, "--seq-length", "16",
                     "--output-dir", tmp_path / "out", cwd=tmp_path)
    _one_sentence(done, str(bad), "is not UTF-8")
    assert [p.name for p in tmp_path.iterdir()] == ["book.txt"]


def test_hf_dir_given_a_megatron_checkpoint(models, text, tmp_path):
    _, ckpt = models
    done = _evaluate("--hf-dir", ckpt, "--text-files", text, "--seq-length", "16",
                     "--output-dir", tmp_path / "out", cwd=tmp_path)
    line = _one_sentence(done, f"--load {ckpt}", "griffin-megatron convert mcore-to-hf")
    assert "convert --to" not in line
    assert not any(tmp_path.iterdir())
