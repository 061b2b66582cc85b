"""The generate API: arguments, stopping, streaming, chunked prefill, lazy package imports."""

import subprocess
import sys

import pytest
import torch

import griffin_megatron
from griffin_megatron.generation import GriffinInferenceCache, forward_with_cache, generate, stream_generate

from tests.fixtures.tiny_models import VOCAB

PROMPTS = [[5, 17, 300, 42, 9, 88, 120, 7, 7, 64, 3, 250], [400, 2, 77]]


def _greedy_reference(model, prompt, steps):
    """Greedy decoding written out with the model and cache directly."""
    cache = GriffinInferenceCache(1)
    tokens = []
    with torch.inference_mode():
        logits = forward_with_cache(model, torch.tensor([prompt]), torch.arange(len(prompt)).unsqueeze(0), cache)
        for step in range(steps):
            token = int(logits[0, -1].argmax())
            tokens.append(token)
            logits = forward_with_cache(model, torch.tensor([[token]]), torch.tensor([[len(prompt) + step]]),
                                        cache)
    return tokens


def test_package_exports_generate():
    assert griffin_megatron.generate is generate
    assert {"GriffinConfig", "GriffinModel", "get_preset", "from_hf", "to_hf", "generate"} <= set(
        griffin_megatron.__all__
    )


def test_importing_the_rglru_op_does_not_import_megatron():
    code = "import sys, griffin_megatron.ops.rglru; print('megatron' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_greedy_equals_step_by_step_reference(griffin):
    out = generate(griffin, PROMPTS[:1], max_new_tokens=20)
    assert out[0] == _greedy_reference(griffin, PROMPTS[0], 20)


def test_chunked_prefill_gives_the_same_tokens(griffin):
    whole = generate(griffin, PROMPTS, max_new_tokens=12)
    assert generate(griffin, PROMPTS, max_new_tokens=12, prefill_chunk_size=5) == whole


def test_eos_ends_a_row_and_streaming_reports_every_step(griffin):
    free = generate(griffin, PROMPTS, max_new_tokens=12)
    eos = free[0][3]
    first_eos = free[0].index(eos)
    steps = []
    out = generate(griffin, PROMPTS, max_new_tokens=12, eos=eos, stream=steps.append)
    assert out[0] == free[0][: first_eos + 1]
    expected_second = free[1][: free[1].index(eos) + 1] if eos in free[1] else free[1]
    assert out[1] == expected_second
    assert len(steps) == max(len(out[0]), len(out[1]))
    for row in range(2):
        assert [s[row] for s in steps if s[row] is not None] == out[row]


def test_stream_generate_can_stop_early_and_restores_training_mode(griffin):
    griffin.train()
    try:
        iterator = stream_generate(griffin, PROMPTS, max_new_tokens=50)
        first = next(iterator)
        assert len(first) == 2 and all(isinstance(t, int) for t in first)
        assert not griffin.training
        iterator.close()
        assert griffin.training
    finally:
        griffin.eval()


@pytest.mark.parametrize(
    "prompts, kwargs, message",
    [
        ([], {}, "non-empty list"),
        ([1, 2, 3], {}, "wrap a single prompt"),
        ([[1, 2], []], {}, "prompt 1 is empty"),
        ([[1, VOCAB]], {}, f"token id {VOCAB}"),
        ([[1, 2]], {"max_new_tokens": 0}, "max_new_tokens=0"),
        ([[1, 2]], {"temperature": -1.0}, "temperature=-1.0"),
        ([[1, 2]], {"top_p": 0.0}, "top_p=0.0"),
        ([[1, 2]], {"top_k": -3}, "top_k=-3"),
    ],
)
def test_bad_arguments_fail_with_a_sentence(griffin, prompts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(griffin, prompts, **kwargs)
