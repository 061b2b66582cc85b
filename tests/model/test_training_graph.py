"""Backward pass: gradients equal HF's, and the autograd graph does not grow with time."""

from __future__ import annotations

import pytest
import torch

from griffin_megatron.interop.hf import from_hf
from griffin_megatron.interop.hf_mapping import hf_to_megatron

from tests.fixtures.hf_models import HAWK, make_hf_model, relative_error

pytestmark = pytest.mark.usefixtures("megatron_single_process")


def _graph_size(tensor: torch.Tensor) -> int:
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def test_autograd_graph_does_not_grow_with_sequence_length():
    model = from_hf(make_hf_model()).train()
    sizes = []
    for T in (16, 64):
        input_ids = torch.randint(0, 300, (2, T))
        loss = model(input_ids, torch.arange(T).expand(2, T), labels=input_ids).sum()
        sizes.append(_graph_size(loss))
    assert sizes[0] == sizes[1], sizes


@pytest.mark.parametrize("hf_kwargs", [dict(), dict(**HAWK)], ids=["griffin", "hawk"])
def test_gradients_equal_hf(hf_kwargs):
    hf = make_hf_model(**hf_kwargs).train()
    ours = from_hf(hf).train()
    T = 24
    # Token 0 is RecurrentGemma's pad id: HF's nn.Embedding(padding_idx=0) gives its row no
    # gradient from the lookup, a training choice of HF's rather than model math.
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, hf.config.vocab_size, (2, T), generator=generator)
    weights = torch.randn(2, T, hf.config.vocab_size, generator=generator)
    (hf(input_ids, use_cache=False).logits * weights).sum().backward()
    (ours(input_ids, torch.arange(T).expand(2, T)) * weights).sum().backward()
    hf_grads = {name: p.grad for name, p in hf.named_parameters() if p.grad is not None}
    hf_grads.pop("lm_head.weight", None)  # tied to the embedding: HF accumulates into one tensor
    expected = hf_to_megatron(hf_grads, ours.config)
    ours_grads = dict((name, p.grad) for name, p in ours.named_parameters())
    assert expected.keys() == ours_grads.keys()
    for name, grad in expected.items():
        assert relative_error(ours_grads[name], grad) <= 1e-5, name
