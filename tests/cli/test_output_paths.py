"""Every path a command will create is checked before any work starts (output_paths): a file in
the way, or a directory the user cannot write, is one sentence with exit 2 and nothing written,
not an OSError traceback at the first write."""

from __future__ import annotations

import os

import pytest

from griffin_megatron import errors
from griffin_megatron.cli import main as cli_main
from griffin_megatron.output_paths import check_creatable_directory, check_creatable_file


def test_a_missing_directory_under_a_directory_is_creatable(tmp_path):
    assert check_creatable_directory(tmp_path / "a" / "b", "--x") == tmp_path / "a" / "b"
    assert check_creatable_file(tmp_path / "a" / "f.json", "--x") == tmp_path / "a" / "f.json"
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_a_file_where_a_directory_should_be(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(errors.InputFileError, match=r"^--x .*/f is a file; pass a directory"):
        check_creatable_directory(tmp_path / "f", "--x")
    with pytest.raises(errors.InputFileError,
                       match=r"lies under .*/f, which is a file, not a directory"):
        check_creatable_directory(tmp_path / "f" / "sub" / "deeper", "--x")
    with pytest.raises(errors.InputFileError, match="lies under .*/f, which is a file"):
        check_creatable_file(tmp_path / "f" / "out.json", "--x")


def test_a_directory_where_a_file_should_be(tmp_path):
    with pytest.raises(errors.InputFileError, match="is a directory; pass a file path"):
        check_creatable_file(tmp_path, "--x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_a_directory_the_user_cannot_write(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(errors.InputFileError, match="locked is not writable by this user"):
            check_creatable_directory(locked / "run", "--save")
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys")
def test_a_directory_that_takes_no_new_entry_whatever_its_mode_says():
    """/sys refuses every new entry, even root's, whom `os.access` lets write anywhere: the
    check creates and removes one entry instead of trusting the mode bits."""
    with pytest.raises(errors.InputFileError, match=r"^--x /sys/griffin-out cannot be written"):
        check_creatable_directory("/sys/griffin-out", "--x")
    assert not os.path.exists("/sys/griffin-out")


def test_checking_a_writable_directory_leaves_nothing_in_it(tmp_path):
    check_creatable_directory(tmp_path / "out", "--x")
    check_creatable_directory(tmp_path, "--x")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command, option", [
    (["train", "--preset", "hawk-tiny", "--train-iters", "2"], "--save"),
    (["train", "--preset", "hawk-tiny", "--train-iters", "2"], "--tensorboard-dir"),
    (["train", "--preset", "hawk-tiny", "--train-iters", "2"], "--data-cache-path"),
    (["evaluate", "--load", "CKPT", "--text", "T", "--seq-length", "8"], "--output-dir"),
    (["lm-eval", "--load", "CKPT", "--tasks", "x"], "--output-path"),
])
def test_commands_refuse_an_output_under_a_file(tmp_path, capsys, monkeypatch, command, option):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "T").write_text("text")
    before = sorted(tmp_path.iterdir())
    status = cli_main.main([*command, option, "afile/out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].endswith(f"error: {option} afile/out lies under {tmp_path}/afile, which is a "
                            "file, not a directory; choose a path inside a directory.")
    assert sorted(tmp_path.iterdir()) == before
