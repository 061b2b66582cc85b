"""GriffinConfig: a Megatron-Core TransformerConfig that also describes Hawk and Griffin.

Defaults are RecurrentGemma's choices (RMSNorm with a (1 + w) gain, GeGLU-tanh MLP with biases,
no dropout, multi-query attention, partial RoPE on half of each head). Every invalid combination
fails at construction with one sentence: what is wrong, why, and how to fix it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.utils import init_method_normal

from .errors import ConfigError

RECURRENT = "R"
ATTENTION = "A"
LAYER_TYPES = {RECURRENT: "recurrent (RG-LRU)", ATTENTION: "local multi-query attention"}
RGLRU_BACKENDS = ("auto", "triton", "torch")


class GriffinConfigError(ConfigError):
    """A user-facing configuration error; its message is one complete sentence."""


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GeLU with the tanh approximation, as in RecurrentGemma (`gelu_pytorch_tanh`)."""
    return F.gelu(x, approximate="tanh")


def _fail(message: str) -> None:
    raise GriffinConfigError(message)


@dataclass
class GriffinConfig(TransformerConfig):
    """Configuration of a Hawk or Griffin model.

    Besides the TransformerConfig fields (hidden_size, num_layers, num_attention_heads,
    num_query_groups, kv_channels, ffn_hidden_size, parallel sizes, dtypes ...):

    block_pattern: temporal-mixing block per layer, repeated over the depth: "R" is a recurrent
        block, "A" a local-attention block. "R" is Hawk, "RRA" is Griffin; any string of R and A.
    lru_width: RG-LRU width (default hidden_size).
    rglru_num_heads: number of block-diagonal blocks of the RG-LRU gates (default
        num_attention_heads). Tensor parallelism gives each rank whole blocks.
    conv_width: temporal width of the causal depthwise Conv1D before the RG-LRU.
    attention_window: local-attention window W, counted as HuggingFace does: a query sees the
        W keys q-W < k <= q (itself included).
    rglru_c: the constant c in log a = -c * sigmoid(gate_a) * softplus(a_param).
    logits_soft_cap: logits become cap * tanh(logits / cap); None disables.
    scale_embeddings: multiply embeddings by sqrt(hidden_size) rounded to bfloat16 (as the
        released model does: 50.5 for width 2560).
    vocab_size, seq_length: vocabulary and training sequence length of the model.
    rotary_percent, rotary_base: RoPE on the first rotary_percent of each head's channels.
    rglru_backend: "auto" (Triton on CUDA, PyTorch on CPU), "triton" or "torch".
    """

    # Griffin's own fields.
    block_pattern: str = "RRA"
    lru_width: Optional[int] = None
    rglru_num_heads: Optional[int] = None
    conv_width: int = 4
    attention_window: int = 2048
    rglru_c: float = 8.0
    logits_soft_cap: Optional[float] = 30.0
    scale_embeddings: bool = True
    vocab_size: int = 256000
    seq_length: int = 2048
    rotary_percent: float = 0.5
    rotary_base: float = 10000.0
    rglru_backend: str = "auto"

    # TransformerConfig fields whose defaults differ for RecurrentGemma-style models.
    num_query_groups: Optional[int] = 1
    normalization: str = "RMSNorm"
    layernorm_epsilon: float = 1e-6
    layernorm_zero_centered_gamma: bool = True
    gated_linear_unit: bool = True
    activation_func: Callable = gelu_tanh
    add_bias_linear: bool = True
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    # Recurrent and attention layers hold different tensors, so distributed checkpoints key
    # every layer by its global number instead of stacking layers into one tensor per name.
    hetereogenous_dist_checkpoint: bool = True

    def __post_init__(self) -> None:
        self._validate_griffin_fields()
        if self.lru_width is None:
            self.lru_width = self.hidden_size
        if self.rglru_num_heads is None:
            self.rglru_num_heads = self.num_attention_heads
        if self.ffn_hidden_size is None:
            self.ffn_hidden_size = 3 * self.hidden_size
        # TE's window (left, right) counts keys on each side of the query: W-1 to the left.
        self.window_size = (self.attention_window - 1, 0)
        self._default_init_methods()
        self._validate_shapes()
        super().__post_init__()

    # Validation ---------------------------------------------------------------------------------

    def _validate_griffin_fields(self) -> None:
        pattern = self.block_pattern
        if not isinstance(pattern, str) or not pattern:
            _fail(
                f"block_pattern={pattern!r} is empty; it names each layer's temporal block, "
                "so give a string of 'R' (recurrent) and 'A' (attention), e.g. 'R' for Hawk "
                "or 'RRA' for Griffin."
            )
        bad = sorted(set(pattern) - set(LAYER_TYPES))
        if bad:
            _fail(
                f"block_pattern={pattern!r} contains {bad}, but only 'R' (recurrent) and 'A' "
                "(local attention) are layer types; write e.g. 'RRA' for Griffin or 'R' for Hawk."
            )
        if len(pattern) > self.num_layers:
            _fail(
                f"block_pattern has {len(pattern)} entries but the model has only "
                f"num_layers={self.num_layers}; shorten the pattern or add layers."
            )
        positive = {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "conv_width": self.conv_width,
            "attention_window": self.attention_window,
            "vocab_size": self.vocab_size,
            "seq_length": self.seq_length,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                _fail(f"{name}={value!r} must be a positive integer.")
        for name in ("lru_width", "rglru_num_heads", "num_query_groups", "ffn_hidden_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                _fail(f"{name}={value!r} must be a positive integer (or left unset for its default).")
        if not self.rglru_c > 0:
            _fail(f"rglru_c={self.rglru_c} must be positive: a = exp(-c * ...) must stay below 1.")
        if self.logits_soft_cap is not None and not self.logits_soft_cap > 0:
            _fail(
                f"logits_soft_cap={self.logits_soft_cap} must be positive, or None to disable "
                "the soft cap."
            )
        if not 0.0 < self.rotary_percent <= 1.0:
            _fail(f"rotary_percent={self.rotary_percent} must be in (0, 1].")
        if self.rglru_backend not in RGLRU_BACKENDS:
            _fail(f"rglru_backend={self.rglru_backend!r} must be one of {RGLRU_BACKENDS}.")
        if self.normalization != "RMSNorm":
            _fail(
                f"normalization={self.normalization!r} is not supported: Griffin uses RMSNorm; "
                "leave normalization at its default."
            )
        if self.context_parallel_size != 1:
            _fail(
                f"context_parallel_size={self.context_parallel_size} is not supported by Griffin "
                "layers yet; use sequence parallelism (sequence_parallel=True) to split long "
                "sequences across tensor-parallel ranks instead."
            )

    def _validate_shapes(self) -> None:
        tp = self.tensor_model_parallel_size
        if self.lru_width % self.rglru_num_heads:
            _fail(
                f"lru_width={self.lru_width} is not divisible by rglru_num_heads="
                f"{self.rglru_num_heads}: the RG-LRU gates are {self.rglru_num_heads} equal "
                "diagonal blocks; pick a head count that divides the width."
            )
        if self.num_attention_heads % self.num_query_groups:
            _fail(
                f"num_attention_heads={self.num_attention_heads} is not divisible by "
                f"num_query_groups={self.num_query_groups}: each key/value head serves an equal "
                "group of query heads; use 1 for multi-query attention."
            )
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            _fail(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; set kv_channels (the head dimension) explicitly."
            )
        head_dim = self.kv_channels or self.hidden_size // self.num_attention_heads
        rotary_dim = head_dim * self.rotary_percent
        if rotary_dim != int(rotary_dim) or int(rotary_dim) % 2:
            _fail(
                f"rotary_percent={self.rotary_percent} of head dimension {head_dim} gives "
                f"{rotary_dim} rotary channels, which must be an even integer; adjust either."
            )
        # lru_width % tp follows from these two: lru_width = rglru_num_heads x block width.
        checks = [
            ("rglru_num_heads", self.rglru_num_heads, "each rank must own whole RG-LRU gate blocks"),
            ("num_attention_heads", self.num_attention_heads, "query heads are split across ranks"),
            ("ffn_hidden_size", self.ffn_hidden_size, "the MLP is split across ranks"),
            ("vocab_size", self.vocab_size, "the vocabulary is split across ranks"),
        ]
        for name, value, why in checks:
            if value % tp:
                _fail(
                    f"{name}={value} is not divisible by tensor_model_parallel_size={tp} "
                    f"({why}); choose a tensor-parallel size that divides {value}"
                    + (" or pad the vocabulary" if name == "vocab_size" else "")
                    + "."
                )
        if self.sequence_parallel and self.seq_length % tp:
            _fail(
                f"seq_length={self.seq_length} is not divisible by tensor_model_parallel_size={tp}"
                ", but sequence parallelism gives each rank an equal slice of the sequence; "
                "choose a sequence length that is a multiple of the tensor-parallel size."
            )
        if (
            self.virtual_pipeline_model_parallel_size is not None
            and self.pipeline_model_parallel_size == 2
            and self.batch_p2p_comm
        ):
            _fail(
                f"virtual_pipeline_model_parallel_size={self.virtual_pipeline_model_parallel_size} "
                "with pipeline_model_parallel_size=2 needs "
                "batch_p2p_comm=False (and overlap_p2p_comm=True, as Megatron-LM sets them): a "
                "batched exchange between the same two ranks carries both activations and "
                "gradients of equal shape, which can be matched to the wrong receive."
            )
        groups = self.num_query_groups
        if groups % tp and tp % groups:
            _fail(
                f"num_query_groups={groups} and tensor_model_parallel_size={tp} must divide one "
                "another (key/value heads are split across ranks, or replicated when fewer)."
            )

    def _default_init_methods(self) -> None:
        # Lecun-normal inputs and depth-scaled outputs, as in the released Griffin code: fan-in
        # std for every input projection and the embedding (which is then scaled by
        # sqrt(hidden_size)), and variance 2 / num_layers over the fan-in for the MLP output.
        if self.init_method is None:
            self.init_method_std = 1.0 / math.sqrt(self.hidden_size)
            self.init_method = init_method_normal(self.init_method_std)
        if self.output_layer_init_method is None:
            std = math.sqrt(2.0 / self.num_layers / (self.ffn_hidden_size or 3 * self.hidden_size))
            self.output_layer_init_method = init_method_normal(std)

    # Derived facts ------------------------------------------------------------------------------

    def layer_type(self, layer_index: int) -> str:
        """'R' or 'A' for the 0-based global layer index."""
        return self.block_pattern[layer_index % len(self.block_pattern)]

    @property
    def layer_types(self) -> list:
        return [self.layer_type(i) for i in range(self.num_layers)]

    @property
    def is_hawk(self) -> bool:
        return ATTENTION not in self.block_pattern

    @property
    def head_dim(self) -> int:
        return self.kv_channels

    @property
    def rglru_block_width(self) -> int:
        return self.lru_width // self.rglru_num_heads

    @property
    def embedding_multiplier(self) -> float:
        """sqrt(hidden_size) rounded to bfloat16, the released model's normaliser."""
        if not self.scale_embeddings:
            return 1.0
        return float(torch.tensor(math.sqrt(self.hidden_size), dtype=torch.bfloat16, device="cpu"))
