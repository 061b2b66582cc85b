"""Cached generation (prefill, continuation prefill, one-token steps) equals the full forward.

Every chunk schedule runs a sequence several attention windows long through the cache and
compares the logits of every position with one uncached forward over the whole sequence.
"""

import pytest
import torch

from griffin_megatron.generation import GriffinInferenceCache, decode_step, forward_with_cache

from tests.fixtures.tiny_models import VOCAB, WINDOW

LENGTH = 96  # 12 windows
RTOL = 1e-5

# Chunk sizes fed before the remaining tokens go one at a time. 75 and 72 exceed one attention
# block (64 queries) plus the window, so they take the blocked path, with and without a past.
SCHEDULES = [
    pytest.param((1,), id="decode-only"),
    pytest.param((5,), id="prefill5"),
    pytest.param((5, 3), id="prefill5-continue3"),
    pytest.param((3, 20), id="prefill3-continue20"),
    pytest.param((75,), id="prefill75-blocked"),
    pytest.param((20, 72), id="prefill20-continue72-blocked"),
    pytest.param((2, 9, 1, 30), id="mixed-chunks"),
]


def _relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _run_cached(model, ids, positions, schedule, **cache_kwargs):
    """Logits [B, T, V] from feeding the sequence through a cache chunk by chunk."""
    B, T = ids.shape
    cache = GriffinInferenceCache(B, **cache_kwargs)
    outputs, start = [], 0
    chunks = list(schedule) + [1] * T
    with torch.inference_mode():
        for size in chunks:
            if start >= T:
                break
            end = min(start + size, T)
            outputs.append(forward_with_cache(model, ids[:, start:end], positions[:, start:end], cache))
            start = end
    return torch.cat(outputs, dim=1), cache


def _inputs(batch=2, seed=1, documents=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, LENGTH), generator=g)
    positions = torch.arange(LENGTH).expand(batch, LENGTH).clone()
    for row, start in (documents or {}).items():
        positions[row, start:] = torch.arange(LENGTH - start)  # a second document starts
    return ids, positions


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("family", ["griffin", "hawk"])
def test_cached_equals_full_forward(family, schedule, request):
    model = request.getfixturevalue(family)
    ids, positions = _inputs()
    with torch.inference_mode():
        full = model(ids, positions)
    cached, _ = _run_cached(model, ids, positions, schedule)
    assert cached.shape == full.shape
    assert _relative_error(cached, full) <= RTOL


@pytest.mark.parametrize("schedule", [(1,), (30,), (3, 40)], ids=["decode-only", "prefill30", "continue"])
def test_document_start_inside_cached_run(griffin, schedule):
    """A document that starts mid-prefill or mid-decode sees nothing of the previous one."""
    ids, positions = _inputs(documents={0: 37, 1: 61})
    with torch.inference_mode():
        full = griffin(ids, positions)
    cached, _ = _run_cached(griffin, ids, positions, schedule)
    assert _relative_error(cached, full) <= RTOL
    # The second document alone gives the same logits: nothing leaked across the start.
    with torch.inference_mode():
        alone = griffin(ids[:1, 37:], positions[:1, 37:])
    assert _relative_error(cached[:1, 37:], alone) <= RTOL


def test_bounded_cache_equals_full_window_cache(griffin):
    """max_length below the window sizes the ring to the sequence and changes nothing else."""
    ids, positions = _inputs()
    short = 6  # fewer tokens than the window
    full, full_cache = _run_cached(griffin, ids[:, :short], positions[:, :short], (2,))
    bounded, bounded_cache = _run_cached(
        griffin, ids[:, :short], positions[:, :short], (2,), max_length=short
    )
    assert _relative_error(bounded, full) <= RTOL
    assert bounded_cache.nbytes() < full_cache.nbytes()
    with pytest.raises(ValueError, match="max_length=6"):
        with torch.inference_mode():
            forward_with_cache(griffin, ids[:, :1], positions[:, :1], bounded_cache)


def test_cache_size_stops_growing_after_the_window(griffin):
    """Sized to the sequence (as generate does), the cache grows up to the window, then stops."""
    ids, positions = _inputs()
    sizes = {}
    for length in (WINDOW // 2, WINDOW, 4 * WINDOW, LENGTH):
        _, cache = _run_cached(
            griffin, ids[:, :length], positions[:, :length], (length,), max_length=length
        )
        sizes[length] = cache.nbytes()
    assert sizes[WINDOW // 2] < sizes[WINDOW]
    assert sizes[WINDOW] == sizes[4 * WINDOW] == sizes[LENGTH]


@pytest.mark.parametrize("family", ["griffin", "hawk"])
def test_decode_step_equals_full_forward(family, request):
    """generate's one-token step (each block's `step`) against the full forward, across a
    document start and several windows of decoding."""
    model = request.getfixturevalue(family)
    ids, positions = _inputs(documents={1: 50})
    with torch.inference_mode():
        full = model(ids, positions)
        cache = GriffinInferenceCache(ids.shape[0])
        outputs = [forward_with_cache(model, ids[:, :5], positions[:, :5], cache)]
        for t in range(5, LENGTH):
            outputs.append(decode_step(model, ids[:, t:t + 1], positions[:, t:t + 1], cache))
    assert _relative_error(torch.cat(outputs, dim=1), full) <= RTOL


def test_bf16_cached_decoding_tracks_fp32(griffin):
    """bf16 parameters: cache in bf16 (RG-LRU state in fp32), logits within bf16 rounding."""
    from tests.fixtures.tiny_models import build_tiny_model

    bf16 = build_tiny_model("RRA", params_dtype=torch.bfloat16, bf16=True)
    bf16.load_state_dict({k: v.to(torch.bfloat16) for k, v in griffin.state_dict().items()
                          if v is not None and v.is_floating_point()}, strict=False)
    ids, positions = _inputs()
    with torch.inference_mode():
        reference = griffin(ids, positions)
    cached, cache = _run_cached(bf16, ids, positions, (5,))
    assert cached.dtype == torch.bfloat16
    assert all(state.rglru_state.dtype == torch.float32 for state in cache.layers.values()
               if hasattr(state, "rglru_state"))
    assert _relative_error(cached.float(), reference) <= 2e-2
