"""Model FLOPs of Hawk / Griffin (and of a plain GPT baseline), for MFU and for `plan`.

Forward FLOPs of one sequence of T tokens, counted by part:
- every matmul at 2 FLOPs per multiply-accumulate: the parallel linears, the block-diagonal RG-LRU
  gates (two gates of W x bw MACs per token, W = lru_width, bw = W / rglru_num_heads), and the
  output layer (2 * D * V per token; the embedding lookup costs nothing);
- windowed attention over the (query, key) pairs inside the window only: query i sees
  min(i + 1, W) keys, so a sequence has sum_i min(i + 1, W) pairs, each costing 4 * head_dim FLOPs
  per query head (QK^T and PV). Causal full attention is the case W >= T; nothing is counted as T^2;
- elementwise arithmetic that is part of the model yet is no matmul: the depthwise Conv1D (2 * K
  FLOPs per channel and token) and the RG-LRU (RGLRU_FLOPS_PER_ELEMENT per channel and token).
Norms, GeLU, residual adds, softmax and the logit soft-cap are not counted (the Megatron / PaLM
convention for model FLOPs). Document boundaries inside a packed sequence are ignored: the count is
that of one document of length T, the work a model FLOP budget refers to.

Training does forward + backward, and backward costs two matmuls per forward matmul, so a training
step is 3 x forward (`TRAINING_MULTIPLIER`); the same factor is used for the elementwise terms.
Activation recompute repeats forward work on the hardware but is not model FLOPs (MFU ignores it).
"""

from __future__ import annotations

from typing import Dict, Optional

from .config import ATTENTION, RECURRENT, GriffinConfig

TRAINING_MULTIPLIER = 3

# RG-LRU arithmetic per channel and token (forward), as the kernels compute it.
RGLRU_ELEMENTWISE_FLOPS = {
    "input gate sigmoid": 1,
    "recurrence gate sigmoid": 1,
    "log_a = -c * sigmoid * softplus": 2,
    "a = exp(log_a)": 1,
    "sqrt(1 - a^2)": 3,
    "x * input gate * multiplier": 2,
    "h = a * h + b": 2,
}
RGLRU_FLOPS_PER_ELEMENT = sum(RGLRU_ELEMENTWISE_FLOPS.values())

# Dense bf16 tensor-core peak per GPU (vendor datasheets, without sparsity), in TFLOP/s.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.05}


def attention_pairs(seq_length: int, window: int) -> int:
    """(query, key) pairs of causal attention over T tokens with a window of W keys (query
    included): sum over i < T of min(i + 1, W)."""
    T, W = seq_length, window
    if T <= W:
        return T * (T + 1) // 2
    return W * (W + 1) // 2 + (T - W) * W


def linear_flops(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def recurrent_block_flops(config: GriffinConfig, seq_length: int) -> Dict[str, int]:
    T, D, W = seq_length, config.hidden_size, config.lru_width
    return {
        "recurrent linears": linear_flops(T, D, 2 * W) + linear_flops(T, W, D),
        "rg-lru gates": 2 * linear_flops(T, config.rglru_block_width, W),
        "conv1d": 2 * T * config.conv_width * W,
        "rg-lru scan": RGLRU_FLOPS_PER_ELEMENT * T * W,
    }


def attention_block_flops(
    *,
    hidden_size: int,
    num_attention_heads: int,
    num_query_groups: int,
    kv_channels: int,
    window: int,
    seq_length: int,
) -> Dict[str, int]:
    T, D, d = seq_length, hidden_size, kv_channels
    Hq, G = num_attention_heads, num_query_groups
    return {
        "attention projections": linear_flops(T, D, (Hq + 2 * G) * d) + linear_flops(T, Hq * d, D),
        "attention scores": 4 * d * Hq * attention_pairs(T, window),
    }


def mlp_flops(hidden_size: int, ffn_hidden_size: int, gated: bool, seq_length: int) -> Dict[str, int]:
    branches = 2 if gated else 1
    return {
        "mlp": linear_flops(seq_length, hidden_size, branches * ffn_hidden_size)
        + linear_flops(seq_length, ffn_hidden_size, hidden_size)
    }


def _accumulate(total: Dict[str, int], parts: Dict[str, int], times: int = 1) -> None:
    for name, value in parts.items():
        total[name] = total.get(name, 0) + times * value


def _attention_mlp_output(
    *,
    hidden_size: int,
    num_attention_heads: int,
    num_query_groups: int,
    kv_channels: int,
    window: int,
    attention_layers: int,
    ffn_hidden_size: int,
    gated_linear_unit: bool,
    mlp_layers: int,
    vocab_size: int,
    seq_length: int,
) -> Dict[str, int]:
    """The parts Griffin shares with a Transformer: attention layers, MLPs, the output layer."""
    total: Dict[str, int] = {}
    attention = attention_block_flops(
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        num_query_groups=num_query_groups,
        kv_channels=kv_channels,
        window=window,
        seq_length=seq_length,
    )
    _accumulate(total, attention, attention_layers)
    mlp = mlp_flops(hidden_size, ffn_hidden_size, gated_linear_unit, seq_length)
    _accumulate(total, mlp, mlp_layers)
    total["output layer"] = linear_flops(seq_length, hidden_size, vocab_size)
    return total


def griffin_forward_flops(config: GriffinConfig, seq_length: Optional[int] = None) -> Dict[str, int]:
    """Forward FLOPs of one sequence, by part (see the module docstring for what is counted)."""
    T = seq_length or config.seq_length
    total: Dict[str, int] = {}
    _accumulate(total, recurrent_block_flops(config, T), config.layer_types.count(RECURRENT))
    shared = _attention_mlp_output(
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        num_query_groups=config.num_query_groups,
        kv_channels=config.kv_channels,
        window=config.attention_window,
        attention_layers=config.layer_types.count(ATTENTION),
        ffn_hidden_size=config.ffn_hidden_size,
        gated_linear_unit=config.gated_linear_unit,
        mlp_layers=config.num_layers,
        vocab_size=config.vocab_size,
        seq_length=T,
    )
    _accumulate(total, shared)
    return {name: value for name, value in total.items() if value}


def gpt_forward_flops(*, num_layers: int, seq_length: int, **shape) -> Dict[str, int]:
    """Forward FLOPs of one sequence through a causal Transformer (full attention), by part.

    shape: hidden_size, num_attention_heads, num_query_groups, kv_channels, ffn_hidden_size,
    gated_linear_unit, vocab_size.
    """
    return _attention_mlp_output(
        window=seq_length,
        attention_layers=num_layers,
        mlp_layers=num_layers,
        seq_length=seq_length,
        **shape,
    )


def training_flops(forward_flops_per_sequence: Dict[str, int], sequences: int) -> int:
    """Model FLOPs of one training step over `sequences` sequences (forward + backward)."""
    return TRAINING_MULTIPLIER * sequences * sum(forward_flops_per_sequence.values())


def peak_bf16_tflops(device_name: str) -> Optional[float]:
    """The datasheet dense bf16 peak of a GPU named like torch.cuda.get_device_name(), or None."""
    upper = device_name.upper()
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in upper:
            return value
    return None


def model_flops_utilization(flops: float, seconds: float, peak_tflops: float) -> float:
    """Achieved model FLOP/s as a fraction of the per-GPU peak (flops counted for one GPU)."""
    return flops / seconds / (peak_tflops * 1e12)
