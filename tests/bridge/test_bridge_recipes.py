"""The Bridge recipe functions: one per shipped YAML recipe, each a ConfigContainer that passes
Bridge's ConfigContainer.validate() at the cluster size its YAML states, carrying that YAML's
sizes, layout and schedule; a recipe key without a Bridge counterpart is refused by name. Also
GriffinModelProvider's Bridge conventions. Bridge is imported in a subprocess
(tests/bridge/validate_recipes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from griffin_megatron.presets import preset_architecture
from griffin_megatron.recipes import load_recipe, recipe_names, stated_cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    extra = tmp_path_factory.mktemp("recipe") / "with-tensorboard.yaml"
    extra.write_text("preset: hawk-tiny\nseq-length: 64\ntensorboard-dir: tb\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "bridge" / "validate_recipes.py"),
                           str(extra)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_validates_with_the_yaml_values(validated, name):
    got = validated["recipes"][name]
    recipe = load_recipe(name)
    architecture = preset_architecture(recipe["preset"])
    assert got["provider"] == "GriffinModelProvider"
    assert (got["num_layers"], got["hidden_size"], got["block_pattern"]) == (
        architecture["num_layers"], architecture["hidden_size"], architecture["block_pattern"])
    assert (got["tp"], got["pp"], got["sp"]) == (
        recipe["tensor-model-parallel-size"], recipe["pipeline-model-parallel-size"],
        recipe["sequence-parallel"])
    assert got["seq_length"] == got["model_seq_length"] == recipe["seq-length"]
    assert (got["gbs"], got["mbs"], got["iters"]) == (
        recipe["global-batch-size"], recipe["micro-batch-size"], recipe["train-iters"])
    assert (got["lr"], got["min_lr"], got["warmup"], got["bf16"]) == (
        recipe["lr"], recipe["min-lr"], recipe["lr-warmup-iters"], recipe["bf16"])
    gpus = stated_cluster(name).gpus
    assert got["data_parallel_size"] == gpus // (got["tp"] * got["pp"])


def test_a_key_without_a_bridge_counterpart_is_refused_by_name(validated):
    refusal = validated["refusal"]
    assert refusal is not None and "'tensorboard-dir'" in refusal, refusal
    assert len(refusal.splitlines()) == 1


def test_provider_defers_validation_to_finalize(validated):
    provider = validated["provider"]
    assert provider["constructed_unchecked"]
    assert provider["finalize_error"] is not None and "'X'" in provider["finalize_error"]


def test_provider_copies_share_process_groups(validated):
    assert validated["provider"]["groups_shared"] and validated["provider"]["fields_copied"]
