"""Every shipped recipe: valid keys, the paper's training setup, a model of the expected size,
and a layout that passes `plan`'s rules and fits its stated cluster."""

import pytest

from griffin_megatron.planning.plan import make_plan
from griffin_megatron.presets import count_parameters, get_preset
from griffin_megatron.recipes import (
    RECIPE_KEYS,
    architecture_overrides,
    load_recipe,
    recipe_names,
    stated_cluster,
)

# Training tokens: De et al. 2024, Table 2 (design.md section 3); RecurrentGemma: 2T tokens.
PAPER_TOKENS = {"100m": 1.9e9, "200m": 3.9e9, "400m": 7.8e9, "1.3b": 25e9, "3b": 60e9,
                "7b": 132.5e9, "14b": 300e9}
EXPECTED = (
    [f"{family}-{size}" for family in ("hawk", "griffin") for size in PAPER_TOKENS]
    + ["recurrentgemma-2b", "recurrentgemma-9b"]
)


def tokens_of(name):
    return 2e12 if name.startswith("recurrentgemma") else PAPER_TOKENS[name.split("-")[1]]


def analytic_parameters(c) -> int:
    """Parameters from the architecture numbers alone (tied embedding counted once)."""
    D, W, F, V, K = c.hidden_size, c.lru_width, c.ffn_hidden_size, c.vocab_size, c.conv_width
    Hq, G, d = c.num_attention_heads, c.num_query_groups, c.kv_channels
    block = W // c.rglru_num_heads
    recurrent = (D * 2 * W + 2 * W) + (W * K + W) + (W + 2 * (W * block + W)) + (W * D + D)
    attention = D * (Hq + 2 * G) * d + (Hq * d * D + D)
    mlp = (D * 2 * F + 2 * F) + (F * D + D)
    layers = sum(
        (recurrent if c.block_pattern[i % len(c.block_pattern)] == "R" else attention) + mlp + 2 * D
        for i in range(c.num_layers)
    )
    return V * D + layers + D


def test_every_paper_size_has_a_recipe():
    assert sorted(recipe_names()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_recipe_keys_and_training_setup(name):
    recipe = load_recipe(name)
    assert set(recipe) <= set(RECIPE_KEYS)
    assert recipe["preset"] == name
    seq = 8192 if name.startswith("recurrentgemma") else 2048
    assert recipe["seq-length"] == seq
    assert recipe["train-iters"] == round(tokens_of(name) / (recipe["global-batch-size"] * seq))
    assert recipe["lr-decay-style"] == "cosine"
    assert 0 < recipe["lr-warmup-iters"] < recipe["train-iters"] // 10
    assert 0 < recipe["min-lr"] < recipe["lr"]
    assert recipe["bf16"] is True
    cluster = stated_cluster(name)
    assert cluster is not None and cluster.memory_gb == 80


@pytest.mark.parametrize("name", EXPECTED)
def test_recipe_model_has_the_expected_parameter_count(name):
    recipe = load_recipe(name)
    config = get_preset(recipe["preset"], **architecture_overrides(recipe))
    assert count_parameters(config) == analytic_parameters(config)


@pytest.mark.parametrize("name", EXPECTED)
def test_recipe_layout_passes_the_rules_and_fits(name):
    plan = make_plan(name)  # raises GriffinConfigError on a broken layout rule
    cluster = stated_cluster(name)
    assert plan.layout.gpus == cluster.gpus
    assert plan.layout.data_parallel * plan.layout.model_parallel == cluster.gpus
    assert plan.memory_problem is None, plan.memory_problem
