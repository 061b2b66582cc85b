"""Left-padded batches: every row behaves exactly as if it were run alone.

Each row's position ids restart at 0 at its first real token; the pads before it (random ids
here, to show their values cannot matter) must not reach the row through the Conv1D taps,
the RG-LRU state or the attention window, and rows of different lengths must not disturb one
another's rotary positions.
"""

import pytest
import torch

from griffin_megatron.generation import GriffinInferenceCache, forward_with_cache, generate

from tests.fixtures.tiny_models import VOCAB, WINDOW

PROMPT_LENGTHS = (3, 11, 2 * WINDOW + 5)  # shorter than the conv, shorter and longer than the window
NEW_TOKENS = 3 * WINDOW
RTOL = 1e-5


def _prompts(seed=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def _teacher_forced_logits(model, ids, positions, continuation, cache):
    """Last prompt logits, then logits after feeding each continuation token: [B, N + 1, V]."""
    outputs = [forward_with_cache(model, ids, positions, cache)[:, -1:]]
    next_positions = positions[:, -1:] + 1
    for step in range(continuation.shape[1]):
        outputs.append(forward_with_cache(model, continuation[:, step:step + 1], next_positions + step, cache))
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("family", ["griffin", "hawk"])
def test_left_padded_rows_equal_each_prompt_alone(family, request):
    model = request.getfixturevalue(family)
    prompts = _prompts()
    g = torch.Generator().manual_seed(3)
    continuation = torch.randint(0, VOCAB, (len(prompts), NEW_TOKENS), generator=g)
    length = max(PROMPT_LENGTHS)
    ids = torch.randint(0, VOCAB, (len(prompts), length), generator=g)  # random pads
    positions = torch.zeros(len(prompts), length, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, length - len(prompt):] = torch.tensor(prompt)
        positions[row, length - len(prompt):] = torch.arange(len(prompt))

    with torch.inference_mode():
        batched = _teacher_forced_logits(
            model, ids, positions, continuation, GriffinInferenceCache(len(prompts))
        )
        for row, prompt in enumerate(prompts):
            alone = _teacher_forced_logits(
                model,
                torch.tensor([prompt]),
                torch.arange(len(prompt)).unsqueeze(0),
                continuation[row:row + 1],
                GriffinInferenceCache(1),
            )
            error = float((batched[row] - alone[0]).abs().max() / alone.abs().max())
            assert error <= RTOL, f"row {row} (prompt length {len(prompt)}): {error:.2e}"


def test_generate_ragged_batch_equals_each_prompt_alone(griffin):
    prompts = _prompts(seed=4)
    batched = generate(griffin, prompts, max_new_tokens=NEW_TOKENS)
    for row, prompt in enumerate(prompts):
        assert batched[row] == generate(griffin, [prompt], max_new_tokens=NEW_TOKENS)[0]


def test_sampled_ragged_batch_is_reproducible(griffin):
    prompts = _prompts(seed=5)
    kwargs = dict(max_new_tokens=10, temperature=0.8, top_k=40, top_p=0.9, seed=11)
    first = generate(griffin, prompts, **kwargs)
    assert first == generate(griffin, prompts, **kwargs)
    assert first != generate(griffin, prompts, **{**kwargs, "seed": 12})
