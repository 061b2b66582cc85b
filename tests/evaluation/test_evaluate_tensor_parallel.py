"""`evaluate` under torchrun with tensor parallelism gives the single-process result: the
vocabulary-parallel loss, the split RG-LRU and attention heads and the chunked cache all agree
across ranks. Pipeline parallelism is refused in one sentence."""

import json
import os
import subprocess
import sys

import pytest

from griffin_megatron.cli.main import main

from tests.fixtures.checkpoints import convert_to_checkpoint, write_hf_dir
from tests.fixtures.word_tokenizers import random_text

RTOL = 1e-5


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    hf = tmp_path_factory.mktemp("hf_tp")
    write_hf_dir(hf)  # multi-query: each rank holds half the query heads and the one KV head
    directory = tmp_path_factory.mktemp("ckpt_tp") / "model"
    convert_to_checkpoint(hf, directory)
    return directory


def _evaluate_args(ckpt, text, out):
    return ["evaluate", "--load", str(ckpt), "--text-files", str(text), "--seq-length", "300",
            "--chunk-tokens", "45", "--no-plot", "--output-dir", str(out)]


def test_tensor_parallel_evaluation_equals_one_process(ckpt, tmp_path):
    text = tmp_path / "doc.txt"
    text.write_text(random_text(800, seed=3))
    assert main(_evaluate_args(ckpt, text, tmp_path / "one")) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--standalone", "-m", "griffin_megatron",
         *_evaluate_args(ckpt, text, tmp_path / "tp2"), "--tensor-parallel-size", "2"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone reports
    one = json.loads((tmp_path / "one" / "evaluation.json").read_text())
    tp2 = json.loads((tmp_path / "tp2" / "evaluation.json").read_text())
    assert tp2["tokens"] == one["tokens"] and len(tp2["buckets"]) == len(one["buckets"]) == 2
    assert tp2["loss"] == pytest.approx(one["loss"], rel=RTOL)
    for a, b in zip(one["buckets"], tp2["buckets"]):
        assert (a["start"], a["end"], a["tokens"]) == (b["start"], b["end"], b["tokens"])
        assert b["loss"] == pytest.approx(a["loss"], rel=RTOL)


def test_pipeline_parallel_evaluation_is_refused(ckpt, tmp_path, capsys):
    text = tmp_path / "doc.txt"
    text.write_text(random_text(50, seed=4))
    status = main([*_evaluate_args(ckpt, text, tmp_path / "out"), "--pipeline-parallel-size", "2"])
    assert status == 2
    assert "runs with tensor parallelism only; use --tensor-parallel-size" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
