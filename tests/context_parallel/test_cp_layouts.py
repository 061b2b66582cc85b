"""Layouts context parallelism cannot run are refused at start, each with one sentence; and
`plan` knows CP (activations per rank, traffic per layer, the CP a long sequence needs)."""

from __future__ import annotations

import re

import pytest
import yaml

from griffin_megatron.config import GriffinConfigError
from griffin_megatron.errors import ConfigError
from griffin_megatron.planning.context_parallel import exchange_bytes, ring_attention_bytes
from griffin_megatron.planning.plan import make_plan
from griffin_megatron.presets import get_preset
from tests.training.harness import TINY, run_cli, run_train


def _one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert "\n" not in message, message


@pytest.mark.parametrize(
    "fields, words",
    [
        pytest.param(dict(seq_length=30, context_parallel_size=4), "not divisible by context_parallel_size=4", id="seq-cp"),
        pytest.param(dict(seq_length=36, context_parallel_size=2, tensor_model_parallel_size=4,
                          sequence_parallel=True), "context_parallel_size x tensor_model_parallel_size = 8",
                     id="seq-cp-tp-sp"),
    ],
)
def test_bad_config_refused(fields, words):
    with pytest.raises(GriffinConfigError) as error:
        get_preset("griffin-tiny", **fields)
    assert words in str(error.value)
    _one_sentence(str(error.value))


def test_te_backend_with_cp_refused_before_building():
    """Refused before Transformer Engine is imported (it does not install on CPUs)."""
    from griffin_megatron.model import GriffinModel

    config = get_preset("griffin-tiny", context_parallel_size=2)
    with pytest.raises(ConfigError, match="works with the 'local' backend only") as error:
        GriffinModel(config, backend="te")
    _one_sentence(str(error.value))


@pytest.mark.parametrize(
    "extra, words",
    [
        pytest.param(["--context-parallel-size", "2"], "1 GPUs is not a multiple of tensor x "
                     "pipeline x context parallel size = 1 x 1 x 2", id="world"),
        pytest.param(["--context-parallel-size", "2", "--backend", "te"],
                     "works with the 'local' backend only", id="te"),
        pytest.param(["--context-parallel-size", "0"], "--context-parallel-size=0 must be a positive",
                     id="zero"),
    ],
)
def test_train_refuses_bad_cp_layout(extra, words, tmp_path):
    done = run_train([*TINY, "--train-iters", "2", "--no-save", *extra], cwd=tmp_path, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_plan_says_what_cp_a_long_sequence_needs(tmp_path):
    done = run_cli(["plan", "--recipe", "griffin-14b", "--seq-length", "131072"], cwd=tmp_path)
    assert done.returncode == 2  # it does not fit at CP 1
    needed = re.search(r"needs context-parallel-size (\d+).*?: (--set .*)$", done.stdout, re.MULTILINE)
    assert needed, done.stdout
    cp = int(needed.group(1))
    assert cp > 1
    sets = dict(word.split("=") for word in needed.group(2).split() if word != "--set")
    overrides = {key: yaml.safe_load(value) for key, value in sets.items()}
    assert overrides["context-parallel-size"] == cp
    # With the changes it names the plan fits; at half that CP it does not.
    fits = make_plan("griffin-14b", overrides={"seq-length": 131072, **overrides})
    assert fits.memory_problem is None
    smaller = make_plan("griffin-14b", overrides={"seq-length": 131072, **overrides,
                                                  "context-parallel-size": cp // 2})
    assert smaller.memory_problem is not None
    assert fits.busiest.activations < smaller.busiest.activations


def test_plan_activations_per_rank_divide_by_cp():
    one = make_plan("griffin-14b", overrides={"seq-length": 8192, "global-batch-size": 1024})
    two = make_plan("griffin-14b", overrides={"seq-length": 8192, "context-parallel-size": 2,
                                              "global-batch-size": 1024})
    # Half the tokens per rank, plus the fp32 decay products the cross-rank RG-LRU keeps
    # (8 bytes per token and RG-LRU channel of each recurrent layer).
    ratio = two.stages[0].activations / one.stages[0].activations
    assert 0.5 < ratio < 0.6, ratio


def test_plan_traffic_is_constant_in_sequence_length():
    config = get_preset("griffin-14b")
    base = make_plan("griffin-14b", overrides={"context-parallel-size": 2}).layout
    from dataclasses import replace

    short = exchange_bytes(config, replace(base, seq_length=4096))
    long = exchange_bytes(config, replace(base, seq_length=131072))
    assert short == long and short["recurrent"] > 0 and short["attention"] > 0
    assert ring_attention_bytes(131072, 1, 1, 128, 2) == 32 * ring_attention_bytes(4096, 1, 1, 128, 2)


def test_plan_refuses_seq_not_divisible_by_cp():
    with pytest.raises(GriffinConfigError, match="not divisible by context_parallel_size=8"):
        make_plan("griffin-14b", overrides={"seq-length": 2052, "context-parallel-size": 8})
