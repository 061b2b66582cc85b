"""FLOP counts of griffin_megatron.flops against independent counts.

- torch.utils.flop_counter.FlopCounterMode over a real forward + backward of tiny models, with
  SDPA on its math path so the attention matmuls are counted too. FlopCounterMode sees matmuls
  only and counts the attention that local_attention actually computes (whole query blocks x key
  blocks, masked pairs included); the model count has the window's (query, key) pairs. The test
  therefore swaps one for the other, with the implemented block count written out here, and
  leaves out the elementwise terms FlopCounterMode cannot see (conv1d: 2 K per channel and token;
  rg-lru scan: RGLRU_FLOPS_PER_ELEMENT per channel and token).
- 2 x tokens x the multiply-accumulates of every weight matrix of the meta-device model.
- the window's (query, key) pairs counted from an explicit mask.
"""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from griffin_megatron import compat, flops
from griffin_megatron.model import GriffinModel
from griffin_megatron.presets import get_preset, meta_model
from griffin_megatron.runtime import ensure_initialized

ELEMENTWISE = ("conv1d", "rg-lru scan")


def implemented_attention_pairs(seq_length, window):
    """(query, key) pairs local_attention computes: blocks of max(W, 64) queries against
    block + W - 1 keys, or one dense block when the sequence fits in one."""
    block = min(seq_length, max(window, 64))
    if seq_length <= block + window - 1:
        return seq_length * seq_length
    return math.ceil(seq_length / block) * block * (block + window - 1)


@pytest.mark.parametrize(
    "preset, seq_length, batch",
    [
        pytest.param("griffin-tiny", 256, 2, id="griffin-T256-B2-blocked"),
        pytest.param("griffin-tiny", 48, 3, id="griffin-T48-B3-one-block"),
        pytest.param("hawk-tiny", 128, 2, id="hawk-T128-B2"),
    ],
)
def test_training_flops_match_flop_counter(preset, seq_length, batch):
    ensure_initialized()
    config = get_preset(preset, use_cpu_initialization=True, seq_length=seq_length)
    torch.manual_seed(0)
    model = GriffinModel(config)
    ids = torch.randint(0, config.vocab_size, (batch, seq_length))
    positions = torch.arange(seq_length).expand(batch, -1)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(ids, positions, labels=ids).sum().backward()

    parts = flops.griffin_forward_flops(config, seq_length)
    matmul = sum(v for k, v in parts.items() if k not in ELEMENTWISE + ("attention scores",))
    attention_layers = config.layer_types.count("A")
    per_pair = 4 * config.kv_channels * config.num_attention_heads
    implemented = attention_layers * per_pair * implemented_attention_pairs(seq_length, config.attention_window)
    assert parts.get("attention scores", 0) == attention_layers * per_pair * flops.attention_pairs(
        seq_length, config.attention_window
    )
    expected = flops.TRAINING_MULTIPLIER * batch * (matmul + implemented)
    assert counter.get_total_flops() == expected


def test_gpt_baseline_flops_match_flop_counter():
    """The throughput benchmark's GPT: FlopCounterMode counts causal SDPA as the full T x T
    product (what the math kernel computes); the model count has the causal pairs."""
    from benchmarks.gpt_baseline import GPT_TINY, build_gpt

    ensure_initialized()
    seq_length, batch = 96, 2
    torch.manual_seed(0)
    model = build_gpt(GPT_TINY, seq_length, torch.float32, "cpu")
    ids = torch.randint(0, GPT_TINY.vocab_size, (batch, seq_length))
    positions = torch.arange(seq_length).expand(batch, -1)
    # As the benchmark's entry point: Megatron's rotary embedding asks torch.cuda for its device.
    with compat.cuda_stand_ins_on_cpu(), sdpa_kernel(SDPBackend.MATH), \
            FlopCounterMode(display=False) as counter:
        model(ids, positions, None, labels=ids).sum().backward()
    parts = GPT_TINY.forward_flops(seq_length)
    per_pair = 4 * GPT_TINY.kv_channels * GPT_TINY.num_attention_heads * GPT_TINY.num_layers
    assert parts["attention scores"] == per_pair * seq_length * (seq_length + 1) // 2
    matmul = sum(v for k, v in parts.items() if k != "attention scores")
    expected = flops.TRAINING_MULTIPLIER * batch * (matmul + per_pair * seq_length**2)
    assert counter.get_total_flops() == expected


@pytest.mark.parametrize("preset", ["hawk-100m", "griffin-400m", "recurrentgemma-2b"])
def test_matmul_flops_are_twice_the_weight_macs(preset):
    """Every weight matrix (gate blocks included; the tied embedding once, as the output layer)
    costs one multiply-accumulate per element and token."""
    config = get_preset(preset)
    macs = sum(
        p.numel()
        for name, p in meta_model(config).named_parameters()
        if name.endswith("weight") and p.dim() >= 2 and not name.endswith("conv.weight")
    )
    T = 256
    parts = flops.griffin_forward_flops(config, T)
    matmul = sum(v for k, v in parts.items() if k not in ELEMENTWISE + ("attention scores",))
    assert matmul == 2 * T * macs
    assert parts["conv1d"] == 2 * config.conv_width * config.lru_width * T * config.layer_types.count("R")


@pytest.mark.parametrize("seq_length, window", [(1, 1), (5, 8), (8, 8), (9, 8), (100, 16), (37, 1)])
def test_attention_pairs_count_the_window_mask(seq_length, window):
    q = torch.arange(seq_length).unsqueeze(1)
    k = torch.arange(seq_length).unsqueeze(0)
    mask = (k <= q) & (k > q - window)
    assert flops.attention_pairs(seq_length, window) == int(mask.sum())


def test_peak_lookup_and_mfu():
    assert flops.peak_bf16_tflops("NVIDIA H200") == flops.PEAK_BF16_TFLOPS["H200"]
    assert flops.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == flops.PEAK_BF16_TFLOPS["H100"]
    assert flops.peak_bf16_tflops("Some CPU") is None
    assert flops.model_flops_utilization(500e12, 2.0, 500.0) == pytest.approx(0.5)
