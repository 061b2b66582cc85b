"""Bad input to `evaluate` and `lm-eval`: one sentence on stderr, exit status 2, no traceback,
nothing written. Two cases run as a user runs them (a subprocess); the rest call the same
`main` in-process, which is what the subprocess runs (each subprocess costs an import of torch
and Megatron-Core)."""

import subprocess
import sys

import pytest

from tests.fixtures.checkpoints import write_hf_dir


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf")
    write_hf_dir(directory)
    return directory


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "griffin_megatron", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                               "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})


def _one_sentence(result, *words):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def _main(*args, cwd, capsys):
    from griffin_megatron.cli.main import main

    status = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


@pytest.mark.parametrize("case", ["missing-checkpoint", "missing-prefix", "chunk-0", "pp-2",
                                  "split-without-digits"])
def test_evaluate_bad_input(case, hf_dir, tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("the cat sat on a mat")
    common = ["--seq-length", "64", "--output-dir", str(tmp_path / "out"), "--no-plot"]
    args, words = {
        "missing-checkpoint": (["--load", str(tmp_path / "nope"), "--text-files", str(text)],
                               ["does not exist"]),
        "missing-prefix": (["--hf-dir", str(hf_dir), "--data-path", str(tmp_path / "nodata")],
                           ["nodata", "missing"]),
        "chunk-0": (["--hf-dir", str(hf_dir), "--text-files", str(text), "--chunk-tokens", "0"],
                    ["--chunk-tokens 0"]),
        "pp-2": (["--hf-dir", str(hf_dir), "--text-files", str(text),
                  "--pipeline-parallel-size", "2"], ["tensor parallelism only"]),
        # Megatron reads 'abc' as 0,0,0 and divides by the sum (NaN documents per split).
        "split-without-digits": (["--hf-dir", str(hf_dir), "--data-path", str(tmp_path / "d"),
                                  "--split", "abc"], ["--split='abc'", "three"]),
    }[case]
    run = _run if case == "missing-checkpoint" else lambda *a, cwd: _main(*a, cwd=cwd, capsys=capsys)
    result = run("evaluate", *args, *common, cwd=tmp_path)
    _one_sentence(result, *words)
    assert not (tmp_path / "out").exists()


def test_lm_eval_unknown_task(hf_dir, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    result = _main("lm-eval", "--hf-dir", str(hf_dir), "--tasks", "no_such_task_xyz",
                   cwd=tmp_path, capsys=capsys)
    _one_sentence(result, "no_such_task_xyz")


def test_lm_eval_missing_checkpoint(tmp_path, capsys):
    pytest.importorskip("lm_eval")
    result = _main("lm-eval", "--load", str(tmp_path / "nope"), "--tasks", "griffin_tiny_choice",
                  "--include-path", str(__import__("pathlib").Path(__file__).parents[1] / "data" / "lm_eval_tasks"),
                  cwd=tmp_path, capsys=capsys)
    _one_sentence(result, "does not exist")


def test_lm_eval_task_data_not_cached_offline(tmp_path):
    """arc_easy's data is on the Hub: without the network (HF_DATASETS_OFFLINE=1 here, so that it
    fails at once instead of retrying) and with an empty cache, one sentence says where the
    cache was looked for and how to run offline, before the model loads."""
    pytest.importorskip("lm_eval")
    cache = tmp_path / "datasets-cache"
    result = subprocess.run(
        # --hf-dir: an empty directory, which would be refused if the model loaded first
        [sys.executable, "-m", "griffin_megatron", "lm-eval", "--hf-dir", str(tmp_path),
         "--tasks", "arc_easy", "--output-path", str(tmp_path / "out.json")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
             "HF_DATASETS_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf-home"),
             "OMP_NUM_THREADS": "1",
             "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
    _one_sentence(result, "arc_easy", "not cached", str(cache), "HF_DATASETS_CACHE",
                  "HF_DATASETS_OFFLINE=1", "--include-path", "tests/data/lm_eval_tasks")
    assert not (tmp_path / "out.json").exists()
