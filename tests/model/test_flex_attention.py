"""FlexAttention for the local backend (modules/flex_attention.py) against a dense oracle, the
blocked SDPA path and HF RecurrentGemma.

The (query, key) pairs an attention call admits are read off the call itself: with all-zero
queries and keys every admitted key gets the same weight, and with one-hot values (value j =
the j-th unit vector) output row i is nonzero exactly at the keys query i admits. The oracle
enumerates the pairs from the definition (same document, q - W < k <= q), with documents taken
from the caller's position ids or cu_seqlens, not from the code under test.
"""

from __future__ import annotations

import pytest
import torch
from megatron.core.packed_seq_params import PackedSeqParams

from griffin_megatron.checkpoint.record import architecture_dict
from griffin_megatron.errors import ConfigError
from griffin_megatron.modules.flex_attention import flex_local_attention, local_attention_mask
from griffin_megatron.modules.blocked_attention import local_attention
from griffin_megatron.sequence import build_sequence_params

from tests.fixtures.hf_models import hf_logits, make_hf_model, relative_error

HEADS_Q, HEADS_KV = 2, 1  # grouped: flex's enable_gqa and the blocked path's GQA


def _oracle(document: torch.Tensor, window: int, num_past: int) -> torch.Tensor:
    """[B, Tk] document id of every key (the queries are the last Tq) -> [B, Tq, Tk] allowed:
    the key is the query or before it, fewer than W tokens back, in the query's document."""
    Tk = document.shape[1]
    query = torch.arange(num_past, Tk).view(-1, 1)
    key = torch.arange(Tk).view(1, -1)
    in_window = (key <= query) & (key > query - window)
    same_document = document[:, num_past:].unsqueeze(2) == document.unsqueeze(1)
    return in_window.unsqueeze(0) & same_document


def _admitted(attend, Tq: int, Tk: int, B: int, dtype=torch.float64) -> torch.Tensor:
    """The [B, Tq, Tk] pairs an attention function admits, probed with one-hot values."""
    d = 1 << (Tk - 1).bit_length()  # a power of two >= Tk (flex wants one)
    q = torch.zeros(Tq, B, HEADS_Q, d, dtype=dtype)
    k = torch.zeros(Tk, B, HEADS_KV, d, dtype=dtype)
    v = torch.zeros(Tk, B, HEADS_KV, d, dtype=dtype)
    v[torch.arange(Tk), :, :, torch.arange(Tk)] = 1.0
    out = attend(q, k, v)  # [Tq, B, Hq, d]
    assert torch.equal(out[..., 0, :], out[..., 1, :])  # both query heads of the group agree
    return (out[:, :, 0, :Tk] > 0).permute(1, 0, 2)


def _check_both_paths(tokens_since_start, document, window: int, num_past: int):
    Tq, B = tokens_since_start.shape
    Tk = num_past + Tq
    mask = local_attention_mask(tokens_since_start, window, num_past)
    expected = _oracle(document, window, num_past)
    flex = _admitted(lambda q, k, v: flex_local_attention(q, k, v, mask, scale=1.0), Tq, Tk, B)
    blocked = _admitted(lambda q, k, v: local_attention(
        q, k, v, window=window, scale=1.0, tokens_since_start=tokens_since_start,
        num_past=num_past), Tq, Tk, B)
    assert torch.equal(flex, expected)
    assert torch.equal(blocked, expected)
    # Tiles: the BlockMask visits exactly the tiles holding an admitted pair, and skips the
    # mask (a compiled kernel's "full" tiles) exactly where every real pair is admitted. Eager
    # flex applies the mask everywhere, so the probe above cannot see a wrong "full" tile.
    block_mask = mask.block_mask
    block = block_mask.BLOCK_SIZE[0]
    nq, nk = -(-Tq // block), -(-Tk // block)
    admitted = torch.zeros(B, nq * block, nk * block, dtype=torch.bool)
    admitted[:, :Tq, :Tk] = expected
    real = torch.zeros_like(admitted)
    real[:, :Tq, :Tk] = True
    tiles = (admitted.view(B, nq, block, nk, block).any(4).any(2))
    full_tiles = (admitted | ~real).view(B, nq, block, nk, block).all(4).all(2)
    assert torch.equal(block_mask.to_dense()[:, 0].bool(), tiles)
    assert torch.equal(_full_tiles(block_mask, nk), full_tiles & tiles)


def _full_tiles(block_mask, nk: int) -> torch.Tensor:
    """[B, nq, nk] True at the tiles the BlockMask lists as full."""
    counts, indices = block_mask.full_kv_num_blocks[:, 0], block_mask.full_kv_indices[:, 0]
    B, nq = counts.shape
    full = torch.zeros(B, nq, nk, dtype=torch.bool)
    for b in range(B):
        for m in range(nq):
            full[b, m, indices[b, m, :counts[b, m]].long()] = True
    return full


def _documents_from_positions(position_ids: torch.Tensor) -> torch.Tensor:
    return (position_ids == 0).long().cumsum(1)


POSITION_CASES = [
    # (T, window, document starts per row): tiles of 128, so T > 128 spans several
    pytest.param(300, 50, [[0, 100], [0, 20, 250]], id="T300-W50-packed"),
    pytest.param(300, 200, [[0, 129], [0, 255, 256]], id="T300-W200-packed-at-tile-edges"),
    pytest.param(400, 200, [[0], [0, 129]], id="T400-W200-window-slides-within-tile"),
    pytest.param(200, 512, [[0], [0, 77]], id="T200-W512-window-longer-than-sequence"),
    pytest.param(40, 8, [[0, 13, 14, 30], [0]], id="T40-W8-one-tile"),
]


@pytest.mark.parametrize("T, window, starts", POSITION_CASES)
def test_mask_from_position_id_restarts(T, window, starts):
    position_ids = torch.empty(len(starts), T, dtype=torch.long)
    for b, row in enumerate(starts):
        bounds = row + [T]
        for s, e in zip(bounds[:-1], bounds[1:]):
            position_ids[b, s:e] = torch.arange(e - s)
    seq = build_sequence_params(T, len(starts), torch.device("cpu"), position_ids)
    _check_both_paths(seq.tokens_since_start, _documents_from_positions(position_ids), window, 0)


@pytest.mark.parametrize("cu_seqlens, window", [
    pytest.param([0, 60, 61, 190, 260], 64, id="W64"),
    pytest.param([0, 140, 260], 300, id="W300-longer"),
])
def test_mask_from_cu_seqlens(cu_seqlens, window):
    T = cu_seqlens[-1]
    cu = torch.tensor(cu_seqlens, dtype=torch.int32)
    packed = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             max_seqlen_q=T, max_seqlen_kv=T)
    seq = build_sequence_params(T, 1, torch.device("cpu"), packed_seq_params=packed)
    document = torch.zeros(1, T, dtype=torch.long)
    for i, (s, e) in enumerate(zip(cu_seqlens[:-1], cu_seqlens[1:])):
        document[0, s:e] = i
    _check_both_paths(seq.tokens_since_start, document, window, 0)


@pytest.mark.parametrize("rank, shard_length, window, starts", [
    pytest.param(1, 160, 100, [0, 140], id="rank1-halo99-document-in-halo"),
    pytest.param(2, 64, 200, [0, 100], id="rank2-halo-from-two-ranks"),
    pytest.param(1, 150, 40, [0, 150], id="rank1-document-starts-at-shard"),
    pytest.param(3, 50, 300, [0], id="rank3-halo-is-whole-past"),
])
def test_mask_with_context_parallel_halo(rank, shard_length, window, starts):
    """Keys before the queries: a CP rank's shard with the W - 1 tokens before it, from the
    whole sequence's document layout cut as shards.py cuts it."""
    from griffin_megatron.context_parallel.halo import halo_length
    from griffin_megatron.context_parallel.shards import ContextParallelShard

    size = rank + 1
    T = shard_length * size
    position_ids = torch.empty(1, T, dtype=torch.long)
    bounds = starts + [T]
    for s, e in zip(bounds[:-1], bounds[1:]):
        position_ids[0, s:e] = torch.arange(e - s)
    whole = build_sequence_params(T, 1, torch.device("cpu"), position_ids)
    shard = ContextParallelShard(group=None, global_ranks=tuple(range(size)), rank=rank, size=size)
    start, end = shard.bounds(T)
    num_past = halo_length(window - 1, shard_length, shard)
    assert num_past == min(window - 1, start)
    document = _documents_from_positions(position_ids)[:, start - num_past:end]
    _check_both_paths(whole.tokens_since_start[start:end], document, window, num_past)


@pytest.mark.slow
def test_compiled_kernel_admits_the_same_pairs():
    """The compiled kernel skips the mask on "full" tiles, which eager flex never does: compiled
    on the CPU (about a minute), two tiles whose window slides within the query tile."""
    T, window = 250, 150
    position_ids = torch.stack([torch.arange(T), torch.arange(T)])
    position_ids[1, 129:] = torch.arange(T - 129)
    seq = build_sequence_params(T, 2, torch.device("cpu"), position_ids)
    mask = local_attention_mask(seq.tokens_since_start, window)
    admitted = _admitted(
        lambda q, k, v: flex_local_attention(q, k, v, mask, scale=1.0, compiled=True), T, T, 2,
        dtype=torch.float32)
    assert torch.equal(admitted, _oracle(_documents_from_positions(position_ids), window, 0))


def test_mask_continuing_a_cache():
    """Generation prefill: the chunk follows 500 tokens, the last W of them cached as keys."""
    window, seen, T = 64, 500, 150
    num_past = min(seen, window)
    # Row 0 continues one document; row 1's document started 31 tokens before the chunk, after
    # an earlier one, and another starts 90 tokens into the chunk.
    carried = torch.tensor([seen - 1, 30])
    position_ids = torch.stack([torch.arange(seen, seen + T), torch.arange(31, 31 + T)])
    position_ids[1, 90:] = torch.arange(T - 90)
    seq = build_sequence_params(T, 2, torch.device("cpu"), position_ids,
                                carried_tokens_since_start=carried)
    absolute = torch.arange(seen - num_past, seen + T)  # every key's token index
    document = torch.stack([torch.zeros_like(absolute),
                            (absolute >= seen - 31).long() + (absolute >= seen + 90).long()])
    _check_both_paths(seq.tokens_since_start, document, window, num_past)


@pytest.fixture(scope="module")
def single_process():
    from griffin_megatron.runtime import ensure_initialized

    ensure_initialized()


@pytest.mark.parametrize("hf_kwargs, T", [
    pytest.param(dict(), 300, id="mqa-window8-T300"),
    pytest.param(dict(num_key_value_heads=2, attention_window_size=160), 300, id="gqa2-window160"),
])
def test_forward_equals_blocked_and_hf(single_process, hf_kwargs, T):
    from griffin_megatron.interop.hf import from_hf

    hf = make_hf_model(**hf_kwargs)
    ids = torch.randint(0, hf.config.vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(T).expand(2, T)
    reference = hf_logits(hf, ids)
    with torch.no_grad():
        flex = from_hf(hf, local_attention_impl="flex")(ids, positions)
        blocked = from_hf(hf, local_attention_impl="blocked")(ids, positions)
    assert relative_error(flex, reference) <= 1e-5
    assert relative_error(flex, blocked) <= 1e-5


def test_packed_documents_equal_blocked(single_process):
    """HF's Conv1D leaks across documents, so packed rows compare flex with blocked only."""
    from griffin_megatron.interop.hf import from_hf

    hf = make_hf_model(attention_window_size=64)
    ids = torch.randint(0, hf.config.vocab_size, (2, 260),
                        generator=torch.Generator().manual_seed(1))
    positions = torch.cat([torch.arange(130), torch.arange(130)]).expand(2, 260).clone()
    positions[1, 200:] = torch.arange(60)
    with torch.no_grad():
        flex = from_hf(hf, local_attention_impl="flex")(ids, positions)
        blocked = from_hf(hf, local_attention_impl="blocked")(ids, positions)
    assert relative_error(flex, blocked) <= 1e-5


def test_chunked_prefill_equals_whole_forward(single_process):
    """forward_with_cache builds the mask over the cached keys (num_past = min(seen, W))."""
    from griffin_megatron.generation import forward_with_cache
    from griffin_megatron.generation.cache import GriffinInferenceCache
    from griffin_megatron.interop.hf import from_hf

    hf = make_hf_model(attention_window_size=32)
    ids = torch.randint(0, hf.config.vocab_size, (2, 200),
                        generator=torch.Generator().manual_seed(2))
    flex = from_hf(hf, local_attention_impl="flex")
    cache = GriffinInferenceCache(2)
    with torch.no_grad():
        chunks = [forward_with_cache(flex, ids[:, s:s + 45], None, cache)
                  for s in range(0, 200, 45)]
    assert relative_error(torch.cat(chunks, 1), hf_logits(hf, ids)) <= 1e-5


def test_flex_refuses_gradients_on_cpu():
    mask = local_attention_mask(torch.arange(16).view(16, 1), 8)
    q = torch.randn(16, 1, 2, 16, requires_grad=True)
    k, v = torch.randn(16, 1, 1, 16), torch.randn(16, 1, 1, 16)
    with pytest.raises(ConfigError, match="no FlexAttention backward"):
        flex_local_attention(q, k, v, mask, scale=1.0)


def test_auto_is_flex_on_cuda_and_blocked_on_a_cpu():
    from griffin_megatron.modules.flex_attention import choose_local_attention

    assert choose_local_attention("auto", torch.device("cuda"))[0] == "flex"
    assert choose_local_attention("auto", torch.device("cpu"))[0] == "blocked"
    for choice in ("flex", "blocked"):
        for device in ("cpu", "cuda"):
            assert choose_local_attention(choice, torch.device(device)) == (
                choice, "chosen with --local-attention")


def test_choice_is_not_architecture():
    """Checkpoints record the architecture only, so one saved under one choice loads under any."""
    from griffin_megatron.presets import get_preset

    records = [architecture_dict(get_preset("griffin-tiny", local_attention_impl=choice))
               for choice in ("auto", "flex", "blocked")]
    assert records[0] == records[1] == records[2]
    with pytest.raises(ConfigError, match="local_attention_impl='fast'"):
        get_preset("griffin-tiny", local_attention_impl="fast")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("dtype, tolerance", [
    pytest.param(torch.float32, 1e-4, id="fp32"),
    pytest.param(torch.bfloat16, 2e-2, id="bf16"),
])
def test_gradients_equal_blocked_on_cuda(dtype, tolerance):
    """Compiled flex's forward and backward against the blocked path, packed documents and a
    halo of keys before the queries."""
    device = torch.device("cuda")
    T, B, num_past, window = 1000, 2, 300, 256
    position_ids = torch.arange(num_past + T).expand(B, -1).clone()
    position_ids[1, 500:] = torch.arange(num_past + T - 500)
    since = build_sequence_params(num_past + T, B, device, position_ids.to(device)
                                  ).tokens_since_start[num_past:]
    generator = torch.Generator(device=device).manual_seed(0)
    tensors = [torch.randn(shape, device=device, generator=generator, dtype=dtype)
               for shape in ((T, B, 8, 128), (num_past + T, B, 1, 128), (num_past + T, B, 1, 128))]
    grad_out = torch.randn(T, B, 8, 128, device=device, generator=generator, dtype=dtype)
    mask = local_attention_mask(since, window, num_past)
    results = []
    for attend in (
        lambda q, k, v: flex_local_attention(q, k, v, mask, scale=128**-0.5),
        lambda q, k, v: local_attention(q, k, v, window=window, scale=128**-0.5,
                                        tokens_since_start=since, num_past=num_past),
    ):
        inputs = [t.clone().requires_grad_() for t in tensors]
        out = attend(*inputs)
        out.backward(grad_out)
        results.append([out] + [t.grad for t in inputs])
    for flex, blocked in zip(*results):
        assert relative_error(flex.float(), blocked.float()) <= tolerance


def test_benchmark_dry_run(tmp_path, capsys):
    """benchmarks/local_attention.py --tiny (what gpu_validate.sh's dry run calls): every row
    runs and agrees with the blocked path, and the table is appended to --markdown."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "local_attention.py"
    spec = importlib.util.spec_from_file_location("local_attention_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    rows = benchmark.run(benchmark.TINY, torch.device("cpu"), torch.float32, repeats=1,
                         compile_flex=False)
    assert [row["name"] for row in rows] == ["blocked SDPA", "flex (eager)",
                                             "dense-mask SDPA (math)"]
    for row in rows:
        assert row["error"] <= 1e-5 and row["fwd_ms"] > 0, row
    markdown = tmp_path / "results.md"
    assert benchmark.main(["--device", "cpu", "--tiny", "--repeats", "1",
                           "--markdown", str(markdown)]) == 0
    written = markdown.read_text()
    assert "| flex (eager) |" in written and written.strip() in capsys.readouterr().out
