"""`griffin-megatron train` through the command line: a short run end to end (log lines,
Megatron-LM checkpoint layout, TensorBoard, export to HF), the embedded default run, --config
precedence, NaN handling, and one sentence per bad input with nothing written."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest
import torch

from griffin_megatron.checkpoint.lock import LOCK_FILE
from griffin_megatron.checkpoint.record import LATEST_FILE, MODEL_RECORD
from griffin_megatron.cli.main import build_parser
from griffin_megatron.training.arguments import finalize_arguments

from .harness import (
    TINY,
    environment,
    losses,
    model_weights,
    run_cli,
    run_train,
    snapshot,
    validation_losses,
)


def test_short_run_logs_saves_and_exports(tiny_corpus, tmp_path):
    save, board = tmp_path / "ckpt", tmp_path / "tb"
    done = run_train([*TINY, "--data-path", str(tiny_corpus), "--train-iters", "6",
                      "--save", str(save), "--load", str(save), "--save-interval", "3",
                      "--eval-interval", "3", "--log-interval", "2", "--tensorboard-dir", str(board)],
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"no checkpoint in {save} yet: starting from scratch" in out  # a job's first launch
    assert sorted(losses(out)) == [2, 4, 6]
    line = next(l for l in out.splitlines() if l.startswith("iteration        6/6"))
    for field in ("consumed samples: 48", "consumed tokens: 3072", "elapsed ms/iter:", "tokens/s:",
                  "TFLOP/s/GPU:", "MFU: n/a", "lr:", "global batch: 8", "grad norm:",
                  "skipped/nan: 0/0"):
        assert field in line, field
    validation = validation_losses(out)
    assert sorted(validation) == [0, 3, 6]
    assert validation[6] < validation[0] - 0.5

    assert (save / LATEST_FILE).read_text().strip() == "6"
    for iteration in (3, 6):
        directory = save / f"iter_{iteration:07d}"
        record = json.loads((directory / MODEL_RECORD).read_text())
        assert record["iteration"] == iteration and record["has_optimizer"]
        assert record["train_state"]["consumed_train_samples"] == 8 * iteration
        assert (directory / "tokenizer.json").is_file()
    assert f"griffin-megatron generate --load {save} --prompt" in out
    assert f"griffin-megatron convert mcore-to-hf --ckpt {save} --out" in out

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(board))
    events.Reload()
    assert {"lm loss", "learning-rate", "tokens-per-sec", "memory-bytes",
            "validation lm loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("lm loss")] == [2, 4, 6]

    exported = run_cli(["convert", "mcore-to-hf", "--ckpt", str(save), "--out",
                        str(tmp_path / "hf")], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = tokenizer("The cat sat on a mat.", return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0]) == "The cat sat on a mat."
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert torch.isfinite(hf(ids).logits).all()


# The packages of the extras (`train`, `eval`, `test`): the README's main job installs none.
EXTRAS_PACKAGES = ("tensorboard", "sentencepiece", "matplotlib", "lm_eval", "accelerate", "pytest")


def test_default_run_builds_its_corpus_and_trains(tmp_path):
    """No data arguments: the standard library corpus is prepared into a fresh cache. The
    extras' packages are hidden (each import of them fails), as after `pip install -e .`."""
    cache, hidden = tmp_path / "cache", tmp_path / "hidden"
    for name in EXTRAS_PACKAGES:
        (hidden / name).mkdir(parents=True)
        (hidden / name / "__init__.py").write_text(f"raise ImportError('{name} is hidden')\n")
    env = environment(XDG_CACHE_HOME=str(cache))
    env["PYTHONPATH"] = f"{hidden}{os.pathsep}{env['PYTHONPATH']}"
    done = run_train(["--train-iters", "3", "--eval-iters", "1", "--log-interval", "1"],
                     cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "preparing the default corpus" in out
    assert list((cache / "griffin-megatron").glob("stdlib-*/stdlib.bin"))
    assert sorted(losses(out)) == [1, 2, 3]
    assert "validation loss: first" in out
    runs = list((tmp_path / "runs").glob("griffin-*"))
    assert len(runs) == 1 and (runs[0] / LATEST_FILE).read_text().strip() == "3"
    assert (runs[0] / "iter_0000003" / "tokenizer.json").is_file()
    assert "griffin-megatron generate --load runs/griffin-" in out


def test_config_file_below_the_command_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lr: 1.0e-3\ntrain-iters: 7\nmicro-batch-size: 2\nnum-layers: 4\n"
                      "data-path: '0.3 a 0.7 b'\n")
    args = build_parser().parse_args(
        ["train", "--config", str(config), "--lr", "3e-4", "--global-batch-size", "4"]
    )
    run, model = finalize_arguments(args)
    assert run.default_run is False
    assert run.batch.lr == 3e-4  # given on the command line, although equal to the default
    assert run.batch.train_iters == 7 and run.batch.micro_batch_size == 2
    assert run.model.num_layers == 4 and model.num_layers == 4
    assert run.data.data_path == ["0.3", "a", "0.7", "b"]

    config.write_text("learning-rate: 1.0\n")
    args = build_parser().parse_args(["train", "--config", str(config)])
    with pytest.raises(ValueError, match="unknown key 'learning-rate'"):
        finalize_arguments(args)


@pytest.mark.usefixtures("megatron_single_process")
def test_nan_loss_is_reported_and_its_step_skipped(tiny_corpus, tmp_path):
    save = tmp_path / "ckpt"
    done = run_train([*TINY, "--data-path", str(tiny_corpus), "--train-iters", "3",
                      "--save", str(save), "--save-interval", "1"], cwd=tmp_path,
                     env=environment(INSTRUMENT_NAN_AT_ITERATION="2"), instrumented=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iteration 2: lm loss is nan; skipped the optimizer step" in done.stdout
    assert "skipped/nan: 1/1" in done.stdout
    assert "skipped iterations (non-finite loss or gradients): 1" in done.stdout
    before, skipped, after = (model_weights(save / f"iter_{i:07d}") for i in (1, 2, 3))
    for name, tensor in before.items():
        assert torch.equal(tensor, skipped[name]), name
        assert torch.isfinite(after[name]).all(), name
    assert any(not torch.equal(before[n], after[n]) for n in before)


def _other_tokenizer(directory, vocab_size=300):
    from griffin_megatron.data.tokenizers import train_byte_level_bpe

    from .corpus import documents

    return train_byte_level_bpe(documents(50, seed=9), directory, vocab_size=vocab_size).path


def _unrecorded_copy(corpus, directory):
    """The dataset without the record preprocess writes (as Megatron-LM's own tools leave it)."""
    directory.mkdir()
    for suffix in (".bin", ".idx"):
        shutil.copy2(f"{corpus}{suffix}", directory / f"corpus{suffix}")
    return directory / "corpus"


def _few_documents(corpus, directory, count=10):
    """A dataset of `count` documents, tokenized like the corpus."""
    from griffin_megatron.data.preprocess import preprocess

    from .corpus import documents, write_jsonl

    directory.mkdir()
    source = write_jsonl(directory / "few.jsonl", documents(count))
    return preprocess([str(source)], directory / "few", tokenizer=str(corpus.parent)).prefix


def _damaged_copy(checkpoint, directory):
    """The checkpoint with 4 KB of one shard's bytes inverted."""
    shutil.copytree(checkpoint, directory)
    shard = sorted((directory / "iter_0000002").glob("*.distcp"))[0]
    data = bytearray(shard.read_bytes())
    data[1000:5096] = bytes(255 - b for b in data[1000:5096])
    shard.write_bytes(bytes(data))
    return directory


def _bad_index_copy(corpus, directory):
    shutil.copytree(corpus.parent, directory)
    (directory / "corpus.idx").write_bytes(b"not an index" * 10)
    return directory / "corpus"


PLACEHOLDERS = {
    "other": lambda tmp, corpus, ckpt: _other_tokenizer(tmp / "other"),
    "small": lambda tmp, corpus, ckpt: _other_tokenizer(tmp / "small", vocab_size=260),
    "unrecorded": lambda tmp, corpus, ckpt: _unrecorded_copy(corpus, tmp / "unrecorded"),
    "few": lambda tmp, corpus, ckpt: _few_documents(corpus, tmp / "few"),
    "damaged": lambda tmp, corpus, ckpt: _damaged_copy(ckpt, tmp / "damaged"),
    "badidx": lambda tmp, corpus, ckpt: _bad_index_copy(corpus, tmp / "badidx"),
}

BAD_INPUTS = {
    "missing data": (["--data-path", "{tmp}/nothing/corpus"], "is missing"),
    "tokenizer mismatch": (["--tokenizer", "{other}"], "was tokenized with"),
    "ids beyond the tokenizer": (["--data-path", "{unrecorded}", "--tokenizer", "{small}"],
                                 "has only 260 tokens"),
    "another architecture": (["--load", "{ckpt}", "--num-layers", "3"], "another architecture"),
    "batch not divisible": (["--global-batch-size", "7"], "global_batch_size=7 is not divisible by micro_batch_size"),
    "save holds a run": (["--save", "{ckpt}"], "already holds checkpoints"),
    "wandb missing": (["--wandb-project", "p"], "needs the wandb package, which is not installed"),
    "too few documents": (["--data-path", "{few}"],
                          "has 10 documents, which --split 98,2,0 divides into 10 training, 0 "
                          "validation, so the validation split is empty"),
    "no training split": (["--split", "0,0,100"], "gives the training split no documents"),
    "damaged index": (["--data-path", "{badidx}"], "is damaged or not a Megatron indexed dataset"),
    "damaged checkpoint": (["--load", "{damaged}", "--save", "{damaged}"],
                           "iter_0000002/__0_0.distcp is damaged (its SHA-256 differs"),
    "lr changed on resume": (["--load", "{ckpt}", "--save", "{ckpt}", "--lr", "1e-3"],
                             "max_lr 0.001 here, 0.003 there; set by --lr); pass "
                             "--override-opt-param-scheduler"),
    "no iterations left": (["--load", "{ckpt}", "--save", "{ckpt}"],
                           "raise --train-iters and pass --override-opt-param-scheduler"),
    "both schedule flags": (["--override-opt-param-scheduler",
                             "--use-checkpoint-opt-param-scheduler"], "contradict each other"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_sentence_and_nothing_is_written(case, tiny_corpus, tiny_checkpoint,
                                                          tmp_path):
    extra, message = BAD_INPUTS[case]
    if case == "wandb missing" and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    values = {"tmp": tmp_path, "ckpt": ckpt}
    for name, make in PLACEHOLDERS.items():
        if any("{" + name + "}" in arg for arg in extra):
            values[name] = make(tmp_path, tiny_corpus, tiny_checkpoint)
    extra = [arg.format(**values) for arg in extra]
    argv = [*TINY, "--train-iters", "2"]
    if "--data-path" not in extra:
        argv += ["--data-path", str(tiny_corpus)]
    if "--save" not in extra:
        argv += ["--save", str(tmp_path / "new")]
    before = snapshot(tmp_path, tiny_corpus.parent)
    done = run_train(argv + extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("griffin-megatron train: error: ") and error.endswith("."), error
    assert message in error, error
    assert "Traceback" not in done.stderr
    # A refused resume has held its --save directory's lock: the lock file names the new holder.
    assert _without_lock_files(snapshot(tmp_path, tiny_corpus.parent)) == \
        _without_lock_files(before)


def _without_lock_files(files):
    return {path: data for path, data in files.items() if path.name != LOCK_FILE}
