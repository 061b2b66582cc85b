"""Activation memory: the bytes autograd keeps for backward, per layer and micro-batch.

Each term below is one tensor that a module saves for its backward pass (or keeps alive as the
storage behind a saved view), named after the module, with its size in bytes. They were read off
the code: Megatron-Core 0.16 linears save their (sequence-parallel shard of the) input, our
RMSNorm saves fp32 copies, the Conv1D saves its padded input and document masks, the RG-LRU op
saves its three inputs and fp32 states, the blocked sliding-window attention saves its q / k / v
blocks, mask, output and log-sum-exp. `tests/recipes/test_activation_memory.py` compares the sum
with the bytes autograd actually holds (`torch.autograd.graph.saved_tensors_hooks`).

Notation (per micro-batch): s sequence length, b micro-batch size, t tensor-parallel size,
s' = s / t under sequence parallelism (else s), a = bytes per activation element (2 in bf16),
D hidden, W RG-LRU width, F MLP width per GeGLU branch, K conv width, Hq / G query / key-value
heads, d head dim, V vocabulary; per rank W_t = W / t, F_t = F / t, Hq_t = Hq / t and
G_t = max(G / t, 1) (MQA replicates the single key/value head).

Per layer (local backend, bf16, RG-LRU on Triton):
    each RMSNorm                 s' b (8 D + 4)           fp32 input copy, fp32 normalised, rsqrt
    each linear after a norm     a s' b D                 its input (SP keeps the shard)
    recurrent block              a s b (2 W_t)            linear_in output [x; y]
                                 a (s + K - 1) b W_t      Conv1D padded input
                                 a s b (K - 1)            Conv1D document masks
                                 a s b W_t                Conv1D output (also the gates' input)
                                 2 a s b W_t              gate pre-activations
                                 4 ceil(s / 64) b W_t     fp32 state checkpoints every 64 steps
                                                          (PyTorch path: 4 s b W_t + 4 b W_t)
                                 3 a s b W_t              RG-LRU output, gelu(y), their product
    attention block (s > Bq + W - 1: nb blocks of Bq = max(W, 64) queries, L = Bq + W - 1 keys)
                                 4 a s b rot              RoPE cos / sin of q and k (rot = d/2)
                                 2 a nb Bq b Hq_t d       query blocks, attention output blocks
                                 2 a nb L b G_t d         key and value blocks (b = 1: views of
                                                          the padded keys, 2 a (nb Bq + W - 1) G_t d)
                                 a nb Bq L b              window / document mask as an additive bias
                                 4 nb Bq b Hq_t           log-sum-exp (fp32)
                                 a nb Bq b Hq_t d         linear_proj input (b = 1: a s Hq_t d)
    (one block when s <= Bq + W - 1: q, k, the fused QKV output that v views, an s x s mask, the
    output, which linear_proj reads as a view, and the log-sum-exp)
    These are the blocked path's (`--local-attention blocked`). FlexAttention, what `auto`
    runs on CUDA, keeps no blocks and no mask (q, k, v, output, log-sum-exp and a small
    BlockMask), so for it they are expected to be an upper bound; not yet measured on a GPU.
    MLP                          a s b (2 F_t)            linear_fc1 output + bias (gelu's input)
                                 3 a s b F_t              gelu(gate), up branch, linear_fc2 input
With the `te` backend each norm + linear pair saves the norm input and output (2 a s' b D) plus a
fp32 rsigma (4 s' b), and attention runs in one fused kernel that keeps q, k, v (v as a view of
the fused QKV output), the output and the log-sum-exp and needs no mask.

Once per model chunk with recurrent layers: the bool reset flags (s b), shared by its layers.
Outside the layers: the first stage keeps the token ids (8 s b); the last stage keeps the final
norm, the output layer input, the fp32 soft-cap tanh and the fp32 cross-entropy softmax
(4 s b V / t each) and briefly holds the bf16 logits and their fp32 copy (`loss_transient_bytes`).
Per-layer constants (fp32 1 + w of each norm) are included; the
allocator's rounding and the gradients in flight during backward are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

from ..config import ATTENTION, RECURRENT, GriffinConfig

Term = Tuple[str, float]

FP32 = 4
RGLRU_STATE_TILE = 64  # time steps between the Triton kernels' fp32 state checkpoints
MIN_QUERY_BLOCK = 64  # blocked_attention.MIN_BLOCK


@dataclass(frozen=True)
class MicroBatch:
    """What one micro-batch looks like on one GPU."""

    seq_length: int
    micro_batch_size: int = 1
    tensor_parallel: int = 1
    sequence_parallel: bool = False
    activation_bytes: int = 2  # bf16
    backend: str = "local"  # "local" or "te"
    rglru_backend: str = "triton"  # which RG-LRU implementation runs: "triton" (GPU) or "torch"
    context_parallel: int = 1  # seq_length is then one rank's shard

    @property
    def tokens(self) -> int:
        return self.seq_length * self.micro_batch_size

    @property
    def shard_tokens(self) -> float:
        """Tokens per rank where sequence parallelism splits the sequence."""
        return self.tokens / self.tensor_parallel if self.sequence_parallel else self.tokens


def _per_rank(value: int, mb: MicroBatch) -> float:
    return value / mb.tensor_parallel


def _kv_heads_per_rank(config: GriffinConfig, mb: MicroBatch) -> float:
    return max(config.num_query_groups / mb.tensor_parallel, 1)


def norm_and_linear_terms(name: str, linear: str, config: GriffinConfig, mb: MicroBatch) -> List[Term]:
    """A pre-norm and the column-parallel linear that reads it."""
    n, D, a = mb.shard_tokens, config.hidden_size, mb.activation_bytes
    if mb.backend == "te":
        return [(f"{linear} (fused {name}) input and normalised input", 2 * a * n * D),
                (f"{linear} (fused {name}) rsigma", FP32 * n)]
    return [(f"{name} fp32 input and output", 2 * FP32 * n * D), (f"{name} rsqrt", FP32 * n),
            (f"{name} (1 + w) in fp32", FP32 * D), (f"{linear} input", a * n * D)]


def recurrent_block_terms(config: GriffinConfig, mb: MicroBatch) -> List[Term]:
    s, b, a, K = mb.seq_length, mb.micro_batch_size, mb.activation_bytes, config.conv_width
    W = _per_rank(config.lru_width, mb)
    output = [("rg-lru output", a * s * b * W)]
    if mb.rglru_backend == "triton":
        states = [("rg-lru fp32 state checkpoints", FP32 * math.ceil(s / RGLRU_STATE_TILE) * b * W),
                  ("rg-lru decay -c softplus(a) and its input (fp32)", 2 * FP32 * W)]
    else:
        states = [("rg-lru fp32 states", FP32 * s * b * W), ("rg-lru initial state", FP32 * b * W)]
        if a == FP32:
            output = []  # in fp32 the PyTorch path returns its states tensor as the output
    if mb.context_parallel > 1:
        # context_parallel/rglru_scan.py: the decay products P_t, saved by cumprod (in and out).
        states = states + [("rg-lru CP decay products (fp32)", 2 * FP32 * s * b * W)]
    return [
        ("linear_in output [x; y]", a * s * b * 2 * W),
        ("conv1d padded input", a * (s + K - 1) * b * W),
        ("conv1d document masks", a * s * b * (K - 1)),
        ("conv1d output", a * s * b * W),
        ("rg-lru gate pre-activations", 2 * a * s * b * W),
        *states,
        *output,
        ("gelu(y)", a * s * b * W),
        ("linear_out input", a * s * b * W),
    ]


def shared_terms(config: GriffinConfig, layer_types, mb: MicroBatch) -> List[Term]:
    """Tensors built once per forward and saved by every recurrent layer of a model chunk."""
    if RECURRENT not in layer_types:
        return []
    return [("rg-lru reset flags (one per chunk)", mb.tokens)]


def query_blocks(seq_length: int, window: int) -> Tuple[int, int, int]:
    """(blocks, queries per block, keys per block) of local_attention's blocked path; one block of
    all queries and keys when the sequence fits in one."""
    s, W = seq_length, window
    block = min(s, max(W, MIN_QUERY_BLOCK))
    if s <= block + W - 1:
        return 1, s, s
    return math.ceil(s / block), block, block + W - 1


def attention_block_terms(config: GriffinConfig, mb: MicroBatch) -> List[Term]:
    s, b, a, d = mb.seq_length, mb.micro_batch_size, mb.activation_bytes, config.kv_channels
    Hq, G = _per_rank(config.num_attention_heads, mb), _kv_heads_per_rank(config, mb)
    rot = int(d * config.rotary_percent)
    # With fewer key/value heads than ranks Megatron all-gathers the fused QKV output.
    qkv_width = (config.num_attention_heads + 2 * config.num_query_groups) * d
    if config.num_query_groups >= mb.tensor_parallel:
        qkv_width /= mb.tensor_parallel
    terms = [("rotary cos / sin of q and k", 4 * a * s * b * rot)]
    if mb.backend == "te":
        return terms + [
            ("attention q and k (rotary outputs)", a * s * b * (Hq + G) * d),
            ("fused QKV output (held by v)", a * s * b * qkv_width),
            ("attention output (linear_proj input)", a * s * b * Hq * d),
            ("attention log-sum-exp", FP32 * s * b * Hq),
        ]
    blocks, queries, keys = query_blocks(s, config.attention_window)
    if blocks == 1:  # SDPA's output is laid out so that linear_proj's input is a view of it
        return terms + [
            ("attention q and k (rotary outputs)", a * s * b * (Hq + G) * d),
            ("fused QKV output (held by v)", a * s * b * qkv_width),
            ("window / document mask as bias", a * b * s * s),
            ("attention output (linear_proj input)", a * s * b * Hq * d),
            ("attention log-sum-exp", FP32 * s * b * Hq),
        ]
    rows = blocks * queries * b  # padded query rows
    if b == 1:
        # With one sequence the key / value blocks are views of the padded keys and values, and
        # linear_proj gets a copy of the unpadded rows.
        key_rows, proj_rows = blocks * queries + config.attention_window - 1, s
    else:
        key_rows, proj_rows = blocks * keys * b, rows
    return terms + [
        ("attention query blocks", a * rows * Hq * d),
        ("attention key and value blocks", 2 * a * key_rows * G * d),
        ("window / document mask as bias", a * rows * keys),
        ("attention output blocks", a * rows * Hq * d),
        ("attention log-sum-exp", FP32 * rows * Hq),
        ("linear_proj input", a * proj_rows * Hq * d),
    ]


def mlp_terms(config: GriffinConfig, mb: MicroBatch) -> List[Term]:
    n, a = mb.tokens, mb.activation_bytes
    F = _per_rank(config.ffn_hidden_size, mb)
    return [
        ("linear_fc1 output + bias", a * n * 2 * F),
        ("gelu(gate), up branch, linear_fc2 input", 3 * a * n * F),
    ]


def layer_terms(config: GriffinConfig, layer_type: str, mb: MicroBatch) -> List[Term]:
    """Everything one layer of this type keeps for backward, for one micro-batch."""
    if layer_type == RECURRENT:
        temporal = norm_and_linear_terms("input norm", "linear_in", config, mb)
        temporal += recurrent_block_terms(config, mb)
    elif layer_type == ATTENTION:
        temporal = norm_and_linear_terms("input norm", "linear_qkv", config, mb)
        temporal += attention_block_terms(config, mb)
    else:
        raise ValueError(f"unknown layer type {layer_type!r}; expected 'R' or 'A'.")
    mlp = norm_and_linear_terms("pre-MLP norm", "linear_fc1", config, mb) + mlp_terms(config, mb)
    return temporal + mlp


def layer_bytes(config: GriffinConfig, layer_type: str, mb: MicroBatch) -> float:
    return sum(value for _, value in layer_terms(config, layer_type, mb))


def layer_input_bytes(config: GriffinConfig, mb: MicroBatch) -> float:
    """What full recompute keeps of a recomputed group of layers: its input hidden states."""
    return mb.activation_bytes * mb.shard_tokens * config.hidden_size


def embedding_terms(config: GriffinConfig, mb: MicroBatch) -> List[Term]:
    return [("token ids (embedding backward)", 8 * mb.tokens)]


def output_terms(config: GriffinConfig, mb: MicroBatch) -> List[Term]:
    """Final norm, output layer, soft-cap and cross-entropy of the last stage."""
    n = mb.tokens
    vocab = _per_rank(config.vocab_size, mb)
    norm = norm_and_linear_terms("final norm", "output layer", config, mb)
    if mb.backend == "te":  # TENorm + the (non-fused) output layer: norm input, rsigma, output
        norm = [("final norm input and rsigma", mb.activation_bytes * mb.shard_tokens
                 * config.hidden_size + FP32 * mb.shard_tokens),
                ("output layer input", mb.activation_bytes * mb.shard_tokens * config.hidden_size)]
    cap = [("soft-cap tanh (fp32)", FP32 * n * vocab)] if config.logits_soft_cap else []
    return norm + cap + [
        ("cross-entropy softmax (fp32)", FP32 * n * vocab),
        ("cross-entropy targets and mask", 9 * n),
    ]


def loss_transient_bytes(config: GriffinConfig, mb: MicroBatch) -> float:
    """Peak extra memory while the loss is computed: the logits in bf16 and in fp32."""
    return (mb.activation_bytes + FP32) * mb.tokens * _per_rank(config.vocab_size, mb)
