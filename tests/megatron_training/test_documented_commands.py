"""The `pretrain()` entry runs as its documentation shows it. The commands are read from the
script's docstring and from docs/training.md, so the docs cannot drift from what is tested;
only the sizes shrink (the table below) and the placeholders become a tiny corpus, its
tokenizer and a checkpoint directory. The run is the documented one otherwise: its layout
(TP2 + sequence parallel), precision, schedule, checkpoint format, and no --eval-interval or
--distributed-backend, which Megatron-LM's parser leaves for the run to settle (gloo here:
no CUDA).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from .harness import REPO, environment, megatron_losses, requires_megatron_training

pytestmark = requires_megatron_training

# Documented value -> the tiny one (2 processes: the documented TP2 on a 2-core machine).
TINY = {"--nproc-per-node": "2", "--preset": "griffin-tiny", "--micro-batch-size": "2",
        "--global-batch-size": "4", "--train-iters": "2", "--lr-warmup-iters": "1",
        "--save-interval": "2"}
# Added: validation and test default to 100 iterations each; a loss line per iteration.
ADDED = ["--eval-iters", "1", "--seq-length", "64", "--log-interval", "1"]
ITERATIONS = 2


def documented_commands(text: str) -> list:
    """Each indented `torchrun ... examples/pretrain_griffin.py` block, continuation lines
    joined, as an argv list."""
    commands = []
    for match in re.finditer(r"^ *(torchrun (?:.*\\\n)*.*)$", text, flags=re.MULTILINE):
        command = match.group(1).replace("\\\\\n", " ").replace("\\\n", " ")
        if "examples/pretrain_griffin.py" in command:
            commands.append(shlex.split(command))
    return commands


def _sources():
    script = (REPO / "examples" / "pretrain_griffin.py").read_text()
    docs = (REPO / "docs" / "training.md").read_text()
    return {"script-docstring": documented_commands(script),
            "docs-training": documented_commands(docs)}


def test_the_docs_show_the_entry():
    found = _sources()
    assert all(len(commands) == 1 for commands in found.values()), found


def _tiny(command: list, placeholders: dict) -> list:
    argv = []
    for i, arg in enumerate(command):
        previous = command[i - 1] if i else None
        if previous in TINY:
            arg = TINY[previous]
        argv.append(placeholders.get(arg, arg))
    assert argv[0] == "torchrun" and "examples/pretrain_griffin.py" in argv
    assert "--eval-interval" not in argv and "--distributed-backend" not in argv
    script = argv.index("examples/pretrain_griffin.py")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", *argv[1:script],
            str(REPO / argv[script]), *argv[script + 1:], *ADDED]


@pytest.mark.parametrize("source", ["script-docstring", "docs-training"])
def test_documented_command_runs(source, corpus, tmp_path):
    (command,) = _sources()[source]
    checkpoint = tmp_path / "ckpt"
    argv = _tiny(command, {"DATA_PREFIX": str(corpus), "TOK_DIR": str(corpus.parent),
                           "CKPT": str(checkpoint)})
    done = subprocess.run(argv, cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert sorted(megatron_losses(done.stdout)) == list(range(1, ITERATIONS + 1)), done.stdout
    assert "communicate over gloo" in done.stdout
    latest = checkpoint / "latest_checkpointed_iteration.txt"
    assert latest.read_text().strip() == str(ITERATIONS)
    assert (checkpoint / f"iter_{ITERATIONS:07d}" / "metadata.json").is_file()
