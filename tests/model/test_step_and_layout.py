"""Each layer's and block's one-token `step` (and each layer's `prefill`) against its own
`forward`, and the once-per-forward layout facts of the sequence params (what the te backend's
attention reads instead of syncing)."""

from __future__ import annotations

import pytest
import torch

from griffin_megatron.modules.griffin_layer import GriffinLayer
from griffin_megatron.sequence import (
    build_sequence_params,
    document_stream_boundaries,
    next_token_params,
    rotary_frequencies,
    with_document_streams,
)

T, B = 12, 3


@pytest.fixture(scope="module")
def recurrent_block():
    from tests.generation.tiny_models import build_tiny_model

    return build_tiny_model("R").decoder.layers[0].self_attention


def _positions():
    positions = torch.arange(T).expand(B, T).clone()
    positions[1, 5:] = torch.arange(T - 5)  # a document starts at t = 5 in row 1
    positions[2, 1:] = torch.arange(T - 1)  # and at t = 1 in row 2
    return positions


def test_conv_and_rglru_steps_equal_their_forward(recurrent_block):
    """Token by token from freshly allocated state == one forward over the chunk."""
    conv, rg_lru = recurrent_block.conv, recurrent_block.rg_lru
    seq = build_sequence_params(T, B, torch.device("cpu"), _positions())
    x = torch.randn(T, B, conv.weight.shape[0], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        conv_full, _ = conv(x, seq.tokens_since_start)
        rglru_full, _ = rg_lru(conv_full, reset=seq.reset)
        taps = conv.allocate_inference_cache(B, x.dtype, x.device)
        state = rg_lru.allocate_inference_cache(B, x.device)
        conv_steps, rglru_steps = [], []
        for t in range(T):
            y, taps = conv.step(x[t], seq.tokens_since_start[t], taps)
            conv_steps.append(y)
            h, state = rg_lru.step(conv_full[t], seq.reset[t], state)
            rglru_steps.append(h)
    torch.testing.assert_close(torch.stack(conv_steps), conv_full, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.stack(rglru_steps), rglru_full, rtol=1e-6, atol=1e-6)


def test_recurrent_block_step_and_prefill_equal_forward(recurrent_block):
    positions = _positions()
    seq = build_sequence_params(T, B, torch.device("cpu"), positions)
    hidden = torch.randn(T, B, recurrent_block.config.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full, bias = recurrent_block(hidden, packed_seq_params=seq)
        state = recurrent_block.allocate_inference_cache(B, None, hidden.dtype, hidden.device)
        head, _ = recurrent_block.prefill(hidden[:4], state, build_sequence_params(4, B, hidden.device, positions[:, :4]))
        outputs, carried = [head], seq.tokens_since_start[3]
        for t in range(4, T):
            step_seq = next_token_params(positions[:, t:t + 1], carried)
            out, _ = recurrent_block.step(hidden[t:t + 1], state, step_seq)
            outputs.append(out)
            carried = step_seq.tokens_since_start[0]
    torch.testing.assert_close(torch.cat(outputs), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer_index", [pytest.param(0, id="recurrent"),
                                         pytest.param(2, id="attention")])
def test_layer_prefill_and_step_equal_its_forward(layer_index):
    """A GriffinLayer's prefill of 4 tokens, a continuation prefill of 3, then one-token steps
    == Megatron's TransformerLayer.forward (the training wiring) over all T tokens, with
    document starts inside the rows and past the attention window (8) of the tiny model."""
    from tests.generation.tiny_models import build_tiny_model

    layer = build_tiny_model("RRA").decoder.layers[layer_index]
    assert isinstance(layer, GriffinLayer)
    config, positions = layer.config, _positions()
    seq = build_sequence_params(T, B, torch.device("cpu"), positions)
    rotary = rotary_frequencies(seq.positions, int(config.kv_channels * config.rotary_percent),
                                config.rotary_base)  # [T, B, 1, d]
    hidden = torch.randn(T, B, config.hidden_size, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        full, _ = layer(hidden, attention_mask=None, rotary_pos_emb=rotary, packed_seq_params=seq)
        state = layer.allocate_inference_cache(B, None, hidden.dtype, hidden.device)
        outputs, carried = [], None
        for start, end in ((0, 4), (4, 7)):
            chunk_seq = build_sequence_params(end - start, B, hidden.device,
                                              positions[:, start:end],
                                              carried_tokens_since_start=carried)
            outputs.append(layer.prefill(hidden[start:end], state, chunk_seq, rotary[start:end]))
            carried = chunk_seq.tokens_since_start[-1]
        for t in range(7, T):
            step_seq = next_token_params(positions[:, t:t + 1], carried)
            outputs.append(layer.step(hidden[t:t + 1], state, step_seq, rotary[t:t + 1]))
            carried = step_seq.tokens_since_start[0]
    assert not torch.equal(full, hidden)  # the layer is no identity: the comparison can fail
    torch.testing.assert_close(torch.cat(outputs), full, rtol=1e-5, atol=1e-6)


def test_document_streams_cut_at_every_row_and_document_start():
    seq = with_document_streams(build_sequence_params(T, B, torch.device("cpu"), _positions()))
    # Batch-major stream: row 0 is one document; row 1 two (5 + 7); row 2 two (1 + 11).
    assert seq.stream_cu_seqlens.tolist() == [0, 12, 17, 24, 25, 36]
    assert seq.stream_cu_seqlens.dtype == torch.int32
    assert seq.stream_max_seqlen == 12
    # Without document starts after t = 0 the te attention stays on its causal path.
    plain = with_document_streams(build_sequence_params(T, B, torch.device("cpu")))
    assert plain.stream_cu_seqlens is None and plain.stream_max_seqlen is None


def test_stream_boundaries_match_position_ids():
    """The boundaries are where the batch-major stream of position ids restarts at 0."""
    generator = torch.Generator().manual_seed(3)
    positions = torch.zeros(4, 20, dtype=torch.long)
    for b in range(4):
        for t in range(1, 20):
            positions[b, t] = 0 if torch.rand((), generator=generator) < 0.2 else positions[b, t - 1] + 1
    stream = positions.reshape(-1).tolist()
    expected = [i for i, p in enumerate(stream) if p == 0] + [len(stream)]
    reset = (positions == 0).t()
    assert document_stream_boundaries(reset).tolist() == expected


def test_linear_and_mlp_steps_equal_their_forward(recurrent_block):
    """The one-token `step` of Megatron's linears and MLP (parallel_linear.py) == forward."""
    from tests.generation.tiny_models import build_tiny_model

    layer = build_tiny_model("R").decoder.layers[0]
    x = torch.randn(1, B, layer.config.hidden_size, generator=torch.Generator().manual_seed(2))
    u = torch.randn(1, B, layer.config.lru_width, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        for module, inputs in ((layer.mlp, x), (layer.self_attention.linear_in, x),
                               (layer.self_attention.linear_out, u)):
            out, bias = module(inputs)
            step_out, step_bias = module.step(inputs)
            torch.testing.assert_close(step_out, out, rtol=1e-6, atol=1e-6)
            assert (step_bias is None) == (bias is None)
            if bias is not None:
                assert torch.equal(step_bias, bias)


@pytest.mark.parametrize("heads, groups", [(2, 1), (4, 2)])
def test_attention_step_projections_equal_megatrons_split(heads, groups):
    """The one-token QKV (linear_qkv's `step` and the fused layout's view) gives Megatron's
    get_query_key_value_tensors: the same query, key and value heads (to fp32 rounding)."""
    from tests.generation.tiny_models import build_tiny_model

    model = build_tiny_model("RRA", num_attention_heads=heads, num_query_groups=groups,
                             kv_channels=16)
    block = model.decoder.layers[2].self_attention
    x = torch.randn(1, B, model.config.hidden_size, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = block.get_query_key_value_tensors(x)
        got = block._step_query_key_value(x)
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert got[0].shape[2] == heads and got[1].shape[2] == groups
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_output_step_equals_the_output_layer_and_its_soft_cap():
    from tests.generation.tiny_models import build_tiny_model

    model = build_tiny_model("RRA")
    assert model.config.logits_soft_cap is not None  # the hook is part of what is compared
    x = torch.randn(1, B, model.config.hidden_size, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        expected, _ = model.output_layer(x, weight=model.shared_embedding_or_output_weight())
        torch.testing.assert_close(model.output_step(x), expected, rtol=1e-6, atol=1e-6)
