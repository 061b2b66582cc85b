"""Chunked evaluation gives the per-token losses of one forward over the whole sequence.

The reference is the model's own full forward (no cache) with the same position ids, and the
losses computed from its logits in float64. The sequences hold several documents (position ids
restarting at 0), one starting inside a chunk and one exactly at a chunk boundary, and are many
attention windows long (window 8).
"""

import pytest
import torch

from griffin_megatron.evaluation.chunked import chunked_token_losses

RTOL = 1e-5
LENGTH = 97
CHUNK = 16
# Document starts: 0, inside the second chunk (21), exactly at chunk boundaries (48, 64).
DOC_STARTS = (0, 21, 48, 64)


def _positions(length, starts):
    positions = torch.zeros(length, dtype=torch.long)
    bounds = list(starts) + [length]
    for begin, end in zip(bounds[:-1], bounds[1:]):
        positions[begin:end] = torch.arange(end - begin)
    return positions


def _whole_forward_losses(model, ids, positions):
    with torch.no_grad():
        logits = model(ids[:, :-1], positions[:, :-1]).double()
    return -torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def _chunked_losses(model, ids, positions, chunk):
    pieces = [losses for _, losses in chunked_token_losses(model, ids, positions, chunk)]
    return torch.cat(pieces, dim=1).double()


@pytest.mark.parametrize("name", ["griffin", "hawk"])
@pytest.mark.parametrize("chunk", [CHUNK, 7], ids=["chunk16-starts-on-boundaries", "chunk7"])
def test_chunked_equals_whole(name, chunk, request):
    model = request.getfixturevalue(name)
    torch.manual_seed(1)
    ids = torch.randint(0, 512, (2, LENGTH))
    positions = torch.stack([_positions(LENGTH, DOC_STARTS), _positions(LENGTH, (0, 33))])
    expected = _whole_forward_losses(model, ids, positions)
    got = _chunked_losses(model, ids, positions, chunk)
    assert got.shape == expected.shape == (2, LENGTH - 1)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=0.0)


def test_documents_do_not_see_each_other(griffin):
    """The losses of a document are those of the document evaluated alone (from a fresh cache)."""
    torch.manual_seed(2)
    ids = torch.randint(0, 512, (1, LENGTH))
    positions = _positions(LENGTH, DOC_STARTS)[None]
    packed = _chunked_losses(griffin, ids, positions, CHUNK)
    alone = _chunked_losses(griffin, ids[:, 48:64], positions[:, 48:64], CHUNK)
    # packed[:, t] predicts token t + 1: the document 48..63 is predicted by columns 48..62.
    torch.testing.assert_close(packed[:, 48:63], alone, rtol=RTOL, atol=0.0)


def test_bad_chunk_size(hawk):
    from griffin_megatron.errors import ConfigError

    ids = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(ConfigError, match="chunk_tokens=0"):
        next(chunked_token_losses(hawk, ids, ids, 0))
