"""Context parallelism with FlexAttention (`local_attention_impl="flex"`): each CP = 2 shard's
logits equal the unsplit model's (blocked attention) on those tokens, with the W - 1 key/value
halo from the previous rank and the BlockMask built for it; documents cross the shard boundary as
position-id restarts and as THD cu_seqlens, with a window inside one shard (8) and one longer
than a shard (20: the halo is all of rank 0)."""

from __future__ import annotations

import pytest

from tests.context_parallel.flex_worker import compare_flex_shards
from tests.parallel.harness import launch


@pytest.mark.timeout(900)
def test_flex_shards_equal_the_unsplit_forward():
    per_rank = launch(compare_flex_shards, 2, (8, 20))
    for rank, results in enumerate(per_rank):
        for (window, thd), difference in results.items():
            assert difference <= 1e-5, (rank, window, thd, difference)
