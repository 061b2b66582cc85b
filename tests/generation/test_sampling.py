"""Next-token choice: greedy, temperature, top-k and top-p against a plain-Python reference."""

import math

import pytest
import torch

from griffin_megatron.generation import SamplingParams, sample_next_token

LOGITS = torch.tensor([[2.0, 1.5, 0.3, -1.0, 0.9, 1.49, -3.0, 0.0]])
DRAWS = 20000


def _reference_distribution(logits, temperature, top_k, top_p):
    """Filtered softmax computed one token at a time (float64, no tensor ops)."""
    values = [v / temperature for v in logits]
    order = sorted(range(len(values)), key=lambda i: -values[i])
    keep = order[:top_k] if top_k else order
    weights = {i: math.exp(values[i]) for i in keep}
    total = sum(weights.values())
    kept, mass = [], 0.0
    for i in keep:
        if mass >= top_p:
            break
        kept.append(i)
        mass += weights[i] / total
    norm = sum(weights[i] for i in kept)
    return [weights[i] / norm if i in kept else 0.0 for i in range(len(values))]


def test_greedy_is_argmax():
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next_token(logits, SamplingParams()), logits.argmax(-1))


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.8), (1.0, 4, 0.6)],
    ids=["plain", "top-k3", "top-p0.8", "top-k4-top-p0.6"],
)
def test_sampling_frequencies_match_the_reference(temperature, top_k, top_p):
    params = SamplingParams(temperature, top_k, top_p)
    generator = torch.Generator().manual_seed(0)
    draws = sample_next_token(LOGITS.expand(DRAWS, -1), params, generator)
    frequencies = torch.bincount(draws, minlength=LOGITS.shape[1]).double() / DRAWS
    expected = torch.tensor(_reference_distribution(LOGITS[0].tolist(), temperature, top_k, top_p))
    assert torch.all(frequencies[expected == 0] == 0)
    assert torch.allclose(frequencies, expected.double(), atol=0.015)
