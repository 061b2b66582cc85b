"""Our generation equals HF RecurrentGemma's for the same (converted) weights.

HF's reference is its own `generate`: the prompt in one prefill, then one token per step (its
one-token decode is right; its multi-token continuation is not, so it is not used). The prompts
are longer than the attention window and generation runs several windows further.
"""

import pytest
import torch

from griffin_megatron.generation import generate
from griffin_megatron.generation import GriffinInferenceCache, decode_step, forward_with_cache
from griffin_megatron.interop.hf import from_hf

from tests.fixtures.hf_models import make_hf_model

WINDOW = 8
VOCAB = 512
NEW_TOKENS = 40
RTOL = 1e-5


@pytest.fixture(scope="module")
def models():
    hf = make_hf_model(
        num_hidden_layers=6, vocab_size=VOCAB, hidden_size=64, intermediate_size=2 * 192,
        num_attention_heads=4, lru_width=64, attention_window_size=WINDOW, randomise="all",
    )
    return hf, from_hf(hf)


def _hf_generate(hf, prompt):
    out = hf.generate(
        torch.tensor([prompt]),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        return_dict_in_generate=True,
        output_logits=True,
    )
    return out.sequences[0, len(prompt):].tolist(), torch.stack(out.logits, dim=1)[0]


PROMPTS = [
    [2, 51, 300, 7, 18, 420, 99, 5, 61, 230, 17, 44, 8],  # longer than the window
    [2, 77, 3],
]


def test_greedy_generation_equals_hf(models):
    hf, ours = models
    expected = [_hf_generate(hf, prompt)[0] for prompt in PROMPTS]
    assert len(set(expected[0])) > 3, "degenerate reference: the test would prove little"
    assert generate(ours, PROMPTS, max_new_tokens=NEW_TOKENS) == expected


def test_every_step_logits_equal_hf(models):
    """Feed HF's tokens through our cache and compare the logits of each step."""
    hf, ours = models
    prompt = PROMPTS[0]
    tokens, hf_logits = _hf_generate(hf, prompt)
    cache = GriffinInferenceCache(1)
    with torch.inference_mode():
        step_logits = [
            forward_with_cache(ours, torch.tensor([prompt]), torch.arange(len(prompt)).unsqueeze(0),
                               cache, last_token_only=True)
        ]
        for step, token in enumerate(tokens[:-1]):
            position = torch.tensor([[len(prompt) + step]])
            step_logits.append(decode_step(ours, torch.tensor([[token]]), position, cache))
    ours_logits = torch.cat(step_logits, dim=1)[0]
    error = float((ours_logits - hf_logits).abs().max() / hf_logits.abs().max())
    assert error <= RTOL
