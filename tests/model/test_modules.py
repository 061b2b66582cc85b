"""Griffin's building blocks against explicit float64 oracles written from the math."""

from __future__ import annotations

import pytest
import torch

from griffin_megatron.modules.conv1d import causal_depthwise_conv1d
from griffin_megatron.modules.blocked_attention import local_attention
from griffin_megatron.sequence import build_sequence_params


def _since_start(position_ids: torch.Tensor) -> torch.Tensor:
    T, B = position_ids.shape[1], position_ids.shape[0]
    return build_sequence_params(T, B, torch.device("cpu"), position_ids).tokens_since_start


def _random_positions(B: int, T: int, seed: int) -> torch.Tensor:
    """Position ids restarting at 0 at random document starts (always at t = 0)."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.rand(B, T, generator=generator) < 0.15
    starts[:, 0] = True
    positions = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        for t in range(1, T):
            positions[b, t] = 0 if starts[b, t] else positions[b, t - 1] + 1
    return positions


def conv_oracle(x, weight, bias, positions):
    """y[t] = b + sum_k w[k] x[t-(K-1)+k], skipping taps before the document start."""
    T, B, C = x.shape
    K = weight.shape[1]
    y = torch.zeros(T, B, C, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            y[t, b] = bias
            for k in range(K):
                s = t - (K - 1) + k
                if s >= 0 and t - s <= positions[t, b]:
                    y[t, b] += weight[:, k] * x[s, b]
    return y


@pytest.mark.parametrize("T, B, C, K", [(1, 1, 3, 4), (23, 2, 5, 4), (40, 3, 4, 2)])
def test_conv_masks_taps_across_document_starts(T, B, C, K):
    x = torch.randn(T, B, C, dtype=torch.float64)
    weight = torch.randn(C, K, dtype=torch.float64)
    bias = torch.randn(C, dtype=torch.float64)
    positions = _random_positions(B, T, seed=T)
    y, taps = causal_depthwise_conv1d(x, weight, bias, _since_start(positions))
    torch.testing.assert_close(y, conv_oracle(x, weight, bias, positions.t()), rtol=1e-12, atol=1e-12)
    assert torch.equal(taps, torch.cat([torch.zeros(K - 1, B, C, dtype=x.dtype), x])[-(K - 1):])


def attention_oracle(q, k, v, window, positions, scale):
    """Dense float64 softmax over keys q-W < s <= q of the same document."""
    T, B, Hq, d = q.shape
    Hk = k.shape[2]
    out = torch.zeros(T, B, Hq, d, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            lo = max(t - window + 1, t - int(positions[t, b]))
            for h in range(Hq):
                kh = h // (Hq // Hk)
                scores = (k[lo : t + 1, b, kh] @ q[t, b, h]) * scale
                out[t, b, h] = torch.softmax(scores, 0) @ v[lo : t + 1, b, kh]
    return out


@pytest.mark.parametrize(
    "T, B, Hq, Hk, window, block",
    [
        pytest.param(9, 2, 2, 1, 4, None, id="single-block-mqa"),
        pytest.param(37, 2, 4, 2, 5, 8, id="blocked-gqa"),
        pytest.param(50, 1, 2, 2, 16, 7, id="blocked-mha-odd-block"),
        pytest.param(12, 1, 2, 1, 64, None, id="window-longer-than-seq"),
    ],
)
def test_local_attention_equals_dense_oracle(T, B, Hq, Hk, window, block):
    d = 8
    q = torch.randn(T, B, Hq, d, dtype=torch.float64)
    k = torch.randn(T, B, Hk, d, dtype=torch.float64)
    v = torch.randn(T, B, Hk, d, dtype=torch.float64)
    positions = _random_positions(B, T, seed=T + window)
    out = local_attention(
        q, k, v, window=window, scale=d**-0.5, tokens_since_start=_since_start(positions),
        block_size=block,
    )
    expected = attention_oracle(q, k, v, window, positions.t(), d**-0.5)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_local_attention_at_8k_tokens_scales_with_the_window():
    """T = 8192 with a 256-token window: memory and time follow T x W (a dense T x T float mask
    alone would be 256 MiB); rows spot-checked against the dense oracle on their window."""
    T, H, d, window = 8192, 2, 16, 256
    q, k, v = (torch.randn(T, 1, H, d) for _ in range(3))
    out = local_attention(q, k, v, window=window, scale=d**-0.5)
    assert out.shape == (T, 1, H, d) and torch.isfinite(out).all()
    for t in (0, 255, 256, 5000, T - 1):
        lo = max(0, t - window + 1)
        scores = torch.einsum("hd,shd->hs", q[t, 0], k[lo : t + 1, 0]) * d**-0.5
        expected = torch.einsum("hs,shd->hd", torch.softmax(scores, -1), v[lo : t + 1, 0])
        torch.testing.assert_close(out[t, 0], expected, rtol=1e-4, atol=1e-5)


def test_sequence_params_from_position_ids():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [5, 6, 7, 8, 9, 10]])
    seq = build_sequence_params(6, 2, torch.device("cpu"), positions)
    assert seq.reset.t().tolist() == [
        [True, False, False, True, False, True],
        [False, False, False, False, False, False],
    ]
    # Row 1 has no document start in the chunk and no history: taps before t = 0 do not exist.
    assert seq.tokens_since_start.t().tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]
    assert torch.equal(seq.positions, positions.t())
