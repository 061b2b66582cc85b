"""Worker: the forward of a context-parallel shard with FlexAttention against the unsplit
model's blocked attention (forward only: a CPU has no FlexAttention backward)."""

from __future__ import annotations

from typing import Sequence

import torch

from griffin_megatron import context_parallel
from griffin_megatron.checkpoint.full_state import load_full_state_dict
from tests.context_parallel.cp_worker import (
    microbatches,
    packed_params,
    position_ids_of,
    use_layout,
)
from tests.parallel.harness import full_weights, reference_model, relative_difference, tiny_config


def _logits(model, batch):
    with torch.no_grad():
        return model(batch["tokens"], position_ids_of(batch),
                     packed_seq_params=packed_params(batch))


def compare_flex_shards(windows: Sequence[int]) -> dict:
    """{(window, thd): worst relative difference of a shard's logits} on this rank."""
    use_layout({})
    weights = full_weights("griffin")
    cases = [(window, thd) for window in windows for thd in (False, True)]
    references = {}
    for window, thd in cases:
        model = reference_model(tiny_config("griffin", attention_window=window,
                                            local_attention_impl="blocked"))
        load_full_state_dict(model, weights)
        references[(window, thd)] = [_logits(model, batch) for batch in microbatches(thd)]
    use_layout(dict(cp=2))
    shard = context_parallel.current_shard()
    results = {}
    for window, thd in cases:
        model = reference_model(tiny_config("griffin", attention_window=window,
                                            context_parallel_size=2, local_attention_impl="flex"))
        load_full_state_dict(model, weights)
        worst = 0.0
        for batch, expected in zip(microbatches(thd), references[(window, thd)]):
            local, seq = context_parallel.shard_batch(
                dict(batch, position_ids=position_ids_of(batch)), shard, packed_params(batch))
            assert seq.context_parallel is shard
            with torch.no_grad():
                logits = model(local["tokens"], local["position_ids"], packed_seq_params=seq)
            start, end = shard.bounds(batch["tokens"].shape[1])
            worst = max(worst, relative_difference(logits, expected[:, start:end]))
        results[(window, thd)] = worst
    return results
