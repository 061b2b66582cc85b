"""GriffinConfig: a Megatron-Core TransformerConfig that also describes Hawk and Griffin.

Defaults are RecurrentGemma's choices (RMSNorm with a (1 + w) gain, GeGLU-tanh MLP with biases,
no dropout, multi-query attention, partial RoPE on half of each head). Every invalid combination
fails at construction with one sentence: what is wrong, why, and how to fix it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.utils import init_method_normal

from .errors import ConfigError
from .options import LOCAL_ATTENTION_CHOICES

RECURRENT = "R"
ATTENTION = "A"
LAYER_TYPES = {RECURRENT: "recurrent (RG-LRU)", ATTENTION: "local multi-query attention"}
RGLRU_BACKENDS = ("auto", "triton", "torch")


class GriffinConfigError(ConfigError):
    """A user-facing configuration error; its message is one complete sentence. `violations`
    lists every broken layout rule when the error is about the parallel layout."""

    def __init__(self, message: str, violations: Sequence["Violation"] = ()):
        super().__init__(message)
        self.violations = list(violations)


class Violation(NamedTuple):
    """A broken layout rule: its name (quoted in messages) and what is wrong and how to fix it,
    without a final period."""

    rule: str
    message: str


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GeLU with the tanh approximation, as in RecurrentGemma (`gelu_pytorch_tanh`)."""
    return F.gelu(x, approximate="tanh")


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation written out, as transformers' `gelu_new` computes it."""
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))
    return 0.5 * x * (1.0 + torch.tanh(inner))


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    return torch.square(F.relu(x))


# hidden_activation -> the function, under transformers' ACT2FN names and computing exactly what
# ACT2FN[name] does (tests/model/test_hf_config_fields.py compares them): RecurrentGemma applies
# it to the MLP's gate branch and to the recurrent block's y branch.
ACTIVATIONS = {
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu": gelu_erf,
    "gelu_new": gelu_new,
    "relu": F.relu,
    "relu2": relu_squared,
    "silu": F.silu,
    "swish": F.silu,
}


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
    hidden_activation: the activation of the MLP's gate and of the recurrent block's y branch,
        by transformers' name (one of ACTIVATIONS); it sets activation_func.
    share_embeddings_and_output_weights: the output layer is the embedding (tied, as in
        RecurrentGemma); False gives the output layer its own weight.
    rglru_backend: "auto" (Triton on CUDA, PyTorch on CPU), "triton" or "torch".
    local_attention_impl: the local backend's core attention: "flex" (FlexAttention), "blocked"
        (SDPA over query blocks) or "auto" (flex on CUDA, blocked on a CPU). A run setting like
        rglru_backend: both give the same model, so checkpoints do not record it.
    num_layers_per_virtual_pipeline_stage: interleaved pipeline chunks of this many layers (sets
        virtual_pipeline_model_parallel_size, as Megatron-LM's option of that name does).

    The parallel layout (tensor, pipeline, virtual and uneven pipeline stages, sequence parallel,
    recompute) is checked against the model's shapes by `layout_violations` below, every broken
    rule named; `batch_violations` adds the rules that also need the GPU count and batch sizes.
    `griffin-megatron train` and `plan` both rely on these and on nothing else.
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
    hidden_activation: str = "gelu_pytorch_tanh"
    share_embeddings_and_output_weights: bool = True
    rglru_backend: str = "auto"
    local_attention_impl: str = "auto"
    # Megatron-LM's --num-layers-per-virtual-pipeline-stage; when set, it decides
    # virtual_pipeline_model_parallel_size (the model chunks per pipeline rank).
    num_layers_per_virtual_pipeline_stage: Optional[int] = None

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
        violations = layout_violations(self)
        if violations:
            raise layout_error(violations)
        if self.num_layers_per_virtual_pipeline_stage is not None:
            self.virtual_pipeline_model_parallel_size = virtual_stages(self)
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
        activation = ACTIVATIONS.get(self.hidden_activation)
        if activation is None:
            _fail(
                f"hidden_activation={self.hidden_activation!r} is not one the model computes; "
                f"use one of {sorted(ACTIVATIONS)}."
            )
        if self.activation_func not in (gelu_tanh, activation):
            _fail(
                f"activation_func={getattr(self.activation_func, '__name__', self.activation_func)} "
                "is set directly, which checkpoints cannot record; set hidden_activation instead "
                f"(one of {sorted(ACTIVATIONS)})."
            )
        self.activation_func = activation
        if self.rglru_backend not in RGLRU_BACKENDS:
            _fail(f"rglru_backend={self.rglru_backend!r} must be one of {RGLRU_BACKENDS}.")
        if self.local_attention_impl not in LOCAL_ATTENTION_CHOICES:
            _fail(f"local_attention_impl={self.local_attention_impl!r} must be one of "
                  f"{LOCAL_ATTENTION_CHOICES}.")
        if self.normalization != "RMSNorm":
            _fail(
                f"normalization={self.normalization!r} is not supported: Griffin uses RMSNorm; "
                "leave normalization at its default."
            )
        from .context_parallel.layout import check_context_parallel_layout

        check_context_parallel_layout(self, error=GriffinConfigError)

    def _validate_shapes(self) -> None:
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


# Layout rules --------------------------------------------------------------------------------------
# Each returns the rules a config breaks, so that one message can name all of them. The messages use
# the config's field names; `griffin-megatron train` options carry the same names with dashes.


def _divides(rule: str, what: str, value: int, by_name: str, by: int, why: str,
             fix: str) -> List[Violation]:
    if value % by == 0:
        return []
    return [Violation(rule, f"{what}={value} is not divisible by {by_name}={by} ({why}); {fix}")]


def tensor_parallel_violations(config: GriffinConfig) -> List[Violation]:
    tp, name = config.tensor_model_parallel_size, "tensor_model_parallel_size"
    fix = "choose a tensor-parallel size that divides it"
    out = _divides("rglru-heads/tp", "rglru_num_heads", config.rglru_num_heads, name, tp,
                   "each rank must own whole RG-LRU gate blocks", fix)
    out += _divides("heads/tp", "num_attention_heads", config.num_attention_heads, name, tp,
                    "query heads are split across ranks", fix)
    out += _divides("ffn/tp", "ffn_hidden_size", config.ffn_hidden_size, name, tp,
                    "the MLP is split across ranks", fix)
    out += _divides("vocab/tp", "vocab_size", config.vocab_size, name, tp,
                    "the vocabulary is split across ranks", fix + " or pad the vocabulary")
    groups = config.num_query_groups
    if groups % tp and tp % groups:
        out.append(Violation("kv-heads/tp", f"num_query_groups={groups} and {name}={tp} must "
                             "divide one another (key/value heads are split across ranks, or "
                             "replicated when fewer)"))
    head_dim = config.kv_channels or config.hidden_size // config.num_attention_heads
    out += _divides("qkv/tp", "fused QKV width", (config.num_attention_heads + 2 * groups) * head_dim,
                    name, tp, "Megatron splits the fused QKV projection evenly", fix)
    if config.sequence_parallel:
        if tp == 1:
            out.append(Violation("sequence-parallel", "sequence_parallel needs "
                                 "tensor_model_parallel_size > 1 (it splits over the "
                                 "tensor-parallel group); raise it or drop sequence parallelism"))
        out += _divides("seq/tp", "seq_length", config.seq_length, name, tp,
                        "sequence parallelism gives each rank an equal slice of the sequence",
                        "choose a sequence length that is a multiple of the tensor-parallel size")
    return out


def pipeline_stage_layers(config: GriffinConfig) -> Optional[List[int]]:
    """Layers of each pipeline stage (first to last), or None when the stages cannot be formed."""
    pp, total = config.pipeline_model_parallel_size, config.num_layers
    first, last = config.num_layers_in_first_pipeline_stage, config.num_layers_in_last_pipeline_stage
    middle_stages = pp - (first is not None) - (last is not None)
    middle_layers = total - (first or 0) - (last or 0)
    if pp == 1:
        return [total] if first is None and last is None else None
    if middle_stages == 0:
        return [first, last] if middle_layers == 0 else None
    if middle_layers < middle_stages or middle_layers % middle_stages:
        return None
    per_stage = middle_layers // middle_stages
    return ([first] if first is not None else []) + [per_stage] * middle_stages + (
        [last] if last is not None else [])


def pipeline_violations(config: GriffinConfig) -> List[Violation]:
    pp, total = config.pipeline_model_parallel_size, config.num_layers
    first, last = config.num_layers_in_first_pipeline_stage, config.num_layers_in_last_pipeline_stage
    uneven = first is not None or last is not None
    for name, value in (("num_layers_in_first_pipeline_stage", first),
                        ("num_layers_in_last_pipeline_stage", last)):
        if value is not None and value < 1:
            return [Violation("layers/pp", f"{name}={value} must be at least 1")]
    if pp == 1 and uneven:
        return [Violation("layers/pp", "num_layers_in_first/last_pipeline_stage need "
                          "pipeline_model_parallel_size > 1 (there is only one stage); drop them")]
    if pipeline_stage_layers(config) is None:
        if not uneven:
            return [Violation("layers/pp", f"num_layers={total} is not divisible by "
                              f"pipeline_model_parallel_size={pp} (every pipeline stage holds the "
                              "same number of layers); change the depth or the pipeline size, or "
                              "give the first / last stage its own layer count")]
        given = " + ".join(f"{v} ({n} stage)" for n, v in (("first", first), ("last", last))
                           if v is not None)
        middle = pp - (first is not None) - (last is not None)
        return [Violation("layers/pp", f"num_layers={total} cannot be split into {given} and "
                          f"{middle} more stage(s) of equal, positive size over "
                          f"pipeline_model_parallel_size={pp}; make the stage sizes add up to "
                          "the depth")]
    return []


def virtual_pipeline_violations(config: GriffinConfig) -> List[Violation]:
    per_virtual = config.num_layers_per_virtual_pipeline_stage
    pp = config.pipeline_model_parallel_size
    if per_virtual is None:
        return []
    if pp == 1:
        return [Violation("vpp", "num_layers_per_virtual_pipeline_stage needs "
                          "pipeline_model_parallel_size > 1 (it interleaves pipeline stages)")]
    stages = pipeline_stage_layers(config)
    first, last = config.num_layers_in_first_pipeline_stage, config.num_layers_in_last_pipeline_stage
    if first is not None and last is not None and pp == 2:
        return [Violation("vpp", "num_layers_per_virtual_pipeline_stage with both the first and "
                          "the last stage sized needs a third pipeline stage of the default size")]
    per_stage = stages[1 if first is not None else 0]
    if per_stage % per_virtual:
        return [Violation("vpp", f"layers per pipeline stage={per_stage} is not divisible by "
                          f"num_layers_per_virtual_pipeline_stage={per_virtual} (each stage is cut "
                          "into equal virtual stages)")]
    chunks = per_stage // per_virtual
    for name, value in (("num_layers_in_first_pipeline_stage", first),
                        ("num_layers_in_last_pipeline_stage", last)):
        if value is not None and value % chunks:
            return [Violation("vpp", f"{name}={value} is not divisible by the {chunks} virtual "
                              "stages per pipeline rank")]
    return []


def virtual_stages(config: GriffinConfig) -> Optional[int]:
    """virtual_pipeline_model_parallel_size that num_layers_per_virtual_pipeline_stage implies
    (Megatron-LM's rule: a default-sized stage's layers / layers per virtual stage)."""
    if config.num_layers_per_virtual_pipeline_stage is None:
        return config.virtual_pipeline_model_parallel_size
    stages = pipeline_stage_layers(config)
    per_stage = stages[1 if config.num_layers_in_first_pipeline_stage is not None else 0]
    return per_stage // config.num_layers_per_virtual_pipeline_stage


def recompute_violations(config: GriffinConfig) -> List[Violation]:
    granularity, method, count = (config.recompute_granularity, config.recompute_method,
                                  config.recompute_num_layers)
    if granularity == "full":
        if method is None or count is None:
            return [Violation("recompute", "recompute_granularity full needs recompute_method "
                              "(uniform or block) and recompute_num_layers")]
        chunks = virtual_stages(config) or 1
        fewest = min(pipeline_stage_layers(config)) // chunks
        if not 1 <= count <= fewest:
            return [Violation("recompute", f"recompute_num_layers={count} must be between 1 and "
                              f"the {fewest} layers of one pipeline chunk")]
    elif method is not None or count is not None:
        return [Violation("recompute", "recompute_method and recompute_num_layers apply only "
                          "with recompute_granularity full")]
    return []


def interleaving_violations(config: GriffinConfig) -> List[Violation]:
    if (virtual_stages(config) is not None and config.pipeline_model_parallel_size == 2
            and config.batch_p2p_comm):
        return [Violation("vpp-p2p", f"virtual_pipeline_model_parallel_size="
                          f"{virtual_stages(config)} with pipeline_model_parallel_size=2 needs "
                          "batch_p2p_comm=False (and overlap_p2p_comm=True, as Megatron-LM sets "
                          "them): a batched exchange between the same two ranks carries both "
                          "activations and gradients of equal shape, which can be matched to the "
                          "wrong receive")]
    return []


def layout_violations(config: GriffinConfig) -> List[Violation]:
    """Every layout rule the config breaks (empty when the layout is possible)."""
    out = tensor_parallel_violations(config) + pipeline_violations(config)
    if any(v.rule == "layers/pp" for v in out):
        return out  # virtual stages and recompute chunks are undefined without pipeline stages
    out += virtual_pipeline_violations(config)
    if any(v.rule == "vpp" for v in out):
        return out
    return out + recompute_violations(config) + interleaving_violations(config)


def batch_violations(config: GriffinConfig, gpus: int, micro_batch_size: int,
                     global_batch_size: int) -> List[Violation]:
    """The rules of a job: its GPUs are TP x PP x CP x DP, and each step is whole micro-batches
    on every data-parallel rank (in groups of PP with interleaved stages)."""
    tp, pp = config.tensor_model_parallel_size, config.pipeline_model_parallel_size
    cp = config.context_parallel_size
    if gpus < 1:
        return [Violation("gpus", f"the job has {gpus} GPUs; it needs at least one")]
    if gpus % (tp * pp * cp):
        return [Violation("gpus", f"{gpus} GPUs is not a multiple of tensor x pipeline x context "
                          f"parallel size = {tp} x {pp} x {cp} = {tp * pp * cp} (GPUs = TP x PP x "
                          "CP x DP); launch a multiple of their product")]
    data_parallel = gpus // (tp * pp * cp)
    per_step = micro_batch_size * data_parallel
    out = _divides("global-batch", "global_batch_size", global_batch_size,
                   "micro_batch_size x data-parallel size", per_step,
                   "every data-parallel rank runs whole micro-batches",
                   "make it a multiple of that product")
    microbatches = global_batch_size // per_step
    if not out and virtual_stages(config) is not None and microbatches % pp:
        out.append(Violation("vpp-microbatches", f"{microbatches} micro-batches per step is not "
                             f"a multiple of pipeline_model_parallel_size={pp} (Megatron's "
                             "interleaved schedule runs micro-batches in groups of PP)"))
    return out


def layout_error(violations: Sequence[Violation]) -> GriffinConfigError:
    first = violations[0]
    text = f"the layout breaks rule '{first.rule}': {first.message}"
    others = [v.rule for v in violations[1:]]
    if others:
        text += f" (also broken: {', '.join(repr(r) for r in others)})"
    return GriffinConfigError(text + ".", violations)


def check_batch(config: GriffinConfig, gpus: int, micro_batch_size: int,
                global_batch_size: int) -> None:
    violations = batch_violations(config, gpus, micro_batch_size, global_batch_size)
    if violations:
        raise layout_error(violations)
