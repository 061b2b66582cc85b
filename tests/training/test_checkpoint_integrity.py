"""The corruption matrix: a checkpoint whose files differ from what its record says was written
is refused in one sentence naming the file (CheckpointError), before torch reads a byte of it.
Checked in-process on copies of a trained checkpoint; test_train_cli.py runs one case through
the command line."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from griffin_megatron.checkpoint.record import (
    LATEST_FILE,
    MODEL_RECORD,
    read_model_record,
    resolve_checkpoint_dir,
    verify_checkpoint,
)
from griffin_megatron.errors import CheckpointError


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    """A copy of a 2-iteration training run's save directory, and its iteration directory."""
    save = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, save)
    return save, save / "iter_0000002"


def _shard(directory):
    return sorted(directory.glob("*.distcp"))[0]


def _flip_bytes(path, count=4096):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(255 - b for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "flipped bytes in a shard": (lambda d: _flip_bytes(_shard(d)), "is damaged (its SHA-256"),
    "truncated shard": (lambda d: _truncate(_shard(d)), "bytes where"),
    "missing shard": (lambda d: _shard(d).unlink(), "is missing"),
    "garbage .metadata": (lambda d: (d / ".metadata").write_bytes(b"garbage"), "bytes where"),
    # Megatron-Core 0.16 keeps the common state in common.pt; 0.19 writes none (it is in the
    # shards) and has metadata.json beside them instead.
    "truncated common.pt or metadata.json": (
        lambda d: _truncate(d / "common.pt" if (d / "common.pt").exists() else d / "metadata.json"),
        "bytes where"),
    "tokenizer edited": (lambda d: _flip_bytes(d / "tokenizer.json", 16), "is damaged"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_file_is_refused_by_name(case, checkpoint):
    _, directory = checkpoint
    damage, message = DAMAGE[case]
    record = read_model_record(directory)
    verify_checkpoint(directory, record)  # intact: accepted
    damage(directory)
    with pytest.raises(CheckpointError) as refused:
        verify_checkpoint(directory, record)
    text = str(refused.value)
    assert text.startswith(f"checkpoint file {directory}/") and message in text, text
    assert text.endswith("(--load <save>/iter_NNNNNNN)."), text


def test_without_hashes_sizes_are_still_checked(checkpoint):
    _, directory = checkpoint
    record = read_model_record(directory)
    _flip_bytes(_shard(directory))
    verify_checkpoint(directory, record, hashes=False)  # same size: not seen without hashes
    _truncate(_shard(directory))
    with pytest.raises(CheckpointError, match="bytes where"):
        verify_checkpoint(directory, record, hashes=False)


def test_every_file_but_the_record_is_listed(checkpoint):
    _, directory = checkpoint
    files = read_model_record(directory)["files"]
    on_disk = {p.name for p in directory.iterdir() if p.name != MODEL_RECORD}
    assert set(files) == on_disk
    assert all(len(entry["sha256"]) == 64 and entry["size"] > 0 for entry in files.values())


@pytest.mark.parametrize("text, message", [
    ("{\n", "is damaged (Expecting property name"),
    ("[1, 2]", "has no architecture"),
    ("\xff\xfe", "is damaged"),
], ids=["truncated JSON", "not a record", "not text"])
def test_damaged_record_is_refused(checkpoint, text, message):
    _, directory = checkpoint
    (directory / MODEL_RECORD).write_bytes(text.encode("latin-1"))
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(")) as refused:
        read_model_record(directory)
    assert str(refused.value).startswith(f"checkpoint record {directory / MODEL_RECORD}")


@pytest.mark.parametrize("latest, message", [
    ("garbage\n", "holds 'garbage', not an iteration number"),
    ("", "holds '', not an iteration number"),
    ("7\n", "points at iteration 7 but"),
], ids=["garbage", "empty", "missing iteration"])
def test_bad_latest_pointer_is_refused(checkpoint, latest, message):
    save, _ = checkpoint
    (save / LATEST_FILE).write_text(latest)
    with pytest.raises(CheckpointError, match=message) as refused:
        resolve_checkpoint_dir(save)
    assert str(refused.value).endswith(f"or pass --load {save}/iter_NNNNNNN."), refused.value


def test_record_of_a_checkpoint_without_file_list_is_accepted(checkpoint):
    """Checkpoints written before records listed their files load as before."""
    _, directory = checkpoint
    record = json.loads((directory / MODEL_RECORD).read_text())
    del record["files"]
    verify_checkpoint(directory, record)


def test_atomic_directories_follow_the_umask(tmp_path):
    """Not tempfile's 0700: teammates on a shared filesystem can read checkpoints."""
    from griffin_megatron.checkpoint import atomic_directory

    previous = os.umask(0o002)
    try:
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "weights").write_bytes(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o775
    assert stat.S_IMODE((tmp_path / "out" / "weights").stat().st_mode) == 0o664


def test_failed_atomic_directory_leaves_nothing(tmp_path):
    from griffin_megatron.checkpoint import atomic_directory

    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "half").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_save_directory_lock_has_one_holder(tmp_path):
    from griffin_megatron.checkpoint import SaveDirectoryLock, remove_stale_staging

    (tmp_path / ".iter_0000004.partial-abc").mkdir()
    with SaveDirectoryLock(tmp_path):
        with pytest.raises(CheckpointError, match=f"pid {os.getpid()} on"):
            SaveDirectoryLock(tmp_path).acquire()
        assert remove_stale_staging(tmp_path) == [tmp_path / ".iter_0000004.partial-abc"]
    SaveDirectoryLock(tmp_path).acquire().release()  # released with its holder
