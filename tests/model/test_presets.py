"""Preset parameter counts, taken from models built on the meta device."""

from __future__ import annotations

import pytest
import torch
from transformers import RecurrentGemmaForCausalLM

from griffin_megatron.interop.hf_config import hf_config_from_architecture
from griffin_megatron.presets import NOMINAL_PARAMETERS, count_parameters, get_preset, preset_names

pytestmark = pytest.mark.usefixtures("megatron_single_process")


@pytest.mark.parametrize(
    "name, published",
    [("recurrentgemma-2b", 2_682_862_080), ("recurrentgemma-9b", 8_579_977_216)],
)
def test_recurrentgemma_counts_equal_hf(name, published):
    config = get_preset(name)
    hf_config = hf_config_from_architecture(config)
    with torch.device("meta"):
        hf_model = RecurrentGemmaForCausalLM(hf_config)
    hf_count = sum(p.numel() for p in hf_model.parameters())  # lm_head is tied: counted once
    assert hf_count == published
    assert count_parameters(config) == hf_count


@pytest.mark.parametrize("name", sorted(NOMINAL_PARAMETERS))
def test_paper_presets_within_ten_percent_of_their_names(name):
    count = count_parameters(get_preset(name))
    assert abs(count / NOMINAL_PARAMETERS[name] - 1.0) <= 0.10, count


def test_every_preset_builds():
    for name in preset_names():
        assert count_parameters(get_preset(name)) > 0


def test_paper_preset_count_matches_hand_count():
    """Independent arithmetic for hawk-100m: embedding + 12 x (norms, recurrent block, MLP)."""
    d, lru, blocks, layers, vocab, conv = 768, 1024, 8, 12, 16384, 4
    bw = lru // blocks
    recurrent = d * 2 * lru + 2 * lru + conv * lru + lru + lru + 2 * (blocks * bw * bw + lru)
    recurrent += lru * d + d
    mlp = d * 2 * 3 * d + 2 * 3 * d + 3 * d * d + d
    expected = vocab * d + layers * (2 * d + recurrent + mlp) + d
    assert count_parameters(get_preset("hawk-100m")) == expected
