"""Transformer Engine building blocks for the `te` backend (imported only when it is chosen).

- Norms: Megatron's `TELayerNormColumnParallelLinear` fuses each pre-norm into the linear that
  reads it (`linear_in`, `linear_qkv`, `linear_fc1`), with `normalization="RMSNorm"` and
  `zero_centered_gamma=config.layernorm_zero_centered_gamma` (True for Griffin), so TE computes
  x / rms(x) * (1 + w) with w initialised to zero, in fp32 inside the kernel.
- Attention: TE's DotProductAttention with `window_size = config.window_size = (W - 1, 0)`: query
  i sees keys i - (W - 1) .. i, the W keys of HF's window (TE's `window_size` contract). Document
  starts inside a batch switch to TE's packed THD path, where the window stays inside each document;
  the packed layout comes precomputed in the sequence params (`with_document_streams`, once per
  forward), so the layers never wait on the host. Generation (`prefill` / `step`) uses the
  PyTorch ring-buffer attention of local_attention.py.
- Precision: bf16 as configured; FP8 through Megatron's `fp8` config (TE linears only; the Conv1D,
  RG-LRU and gate matmuls stay in bf16 / fp32). FP8 GEMMs want dimensions divisible by 16.
- Checkpoints: the fused norm weights are saved under the local backend's keys (layer_specs), and
  `checkpoint.full_state.local_parameter_name` gives the same names for HF export.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ..errors import MissingDependencyError

try:
    import transformer_engine  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without TE
    raise MissingDependencyError(
        "backend='te' needs NVIDIA Transformer Engine, which is not installed; install it on a "
        "CUDA machine with `pip install 'griffin-megatron[te]'` or use backend='local'."
    ) from error

from megatron.core.extensions.transformer_engine import (  # noqa: E402
    TEDotProductAttention,
    TELayerNormColumnParallelLinear,
    TERowParallelLinear,
)
from megatron.core.packed_seq_params import PackedSeqParams  # noqa: E402
from megatron.core.transformer.enums import AttnMaskType  # noqa: E402

from ..sequence import GriffinSequenceParams  # noqa: E402
from .local_attention import LocalWindowedAttention  # noqa: E402


class _StepIsForward:
    """TE's linears have no cheaper one-token form: their generation `step` is their forward."""

    def step(self, x: Tensor):
        return self(x)


class TELayerNormColumnParallelLinearWithStep(_StepIsForward, TELayerNormColumnParallelLinear):
    pass


class TERowParallelLinearWithStep(_StepIsForward, TERowParallelLinear):
    pass


class BiasFreeTELayerNormColumnParallelLinear(TELayerNormColumnParallelLinearWithStep):
    """Fused RMSNorm + QKV projection without a bias (RecurrentGemma's q/k/v have none)."""

    def __init__(self, *args, bias: bool = False, **kwargs):
        super().__init__(*args, bias=False, **kwargs)


class GriffinTEDotProductAttention(TEDotProductAttention):
    """TE sliding-window attention that also respects document starts inside a batch.

    Without document starts beyond t = 0 it is TE's causal sbhd attention. With them, the
    [T, B] batch is viewed as one packed stream (batch-major) and TE's THD path runs with
    the stream's cu_seqlens (GriffinSequenceParams.stream_cu_seqlens), which also keeps the
    window inside each document.
    """

    def __init__(self, config, layer_number, attn_mask_type, attention_type, **kwargs):
        super().__init__(config, layer_number, AttnMaskType.causal, attention_type, **kwargs)
        self._generation_attention = LocalWindowedAttention(config, layer_number)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Optional[Tensor],
        attn_mask_type=None,
        attention_bias=None,
        packed_seq_params: Optional[GriffinSequenceParams] = None,
    ) -> Tensor:
        seq = packed_seq_params
        if seq is None or seq.stream_cu_seqlens is None:
            return super().forward(query, key, value, None, attn_mask_type=AttnMaskType.causal)
        T, B, H, d = query.shape
        cu, max_len = seq.stream_cu_seqlens, seq.stream_max_seqlen
        packed = PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=cu,
            cu_seqlens_kv=cu,
            max_seqlen_q=max_len,
            max_seqlen_kv=max_len,
        )
        to_stream = lambda t: t.transpose(0, 1).reshape(T * B, t.shape[2], t.shape[3])  # noqa: E731
        out = super().forward(
            to_stream(query),
            to_stream(key),
            to_stream(value),
            None,
            attn_mask_type=AttnMaskType.padding_causal,
            packed_seq_params=packed,
        )
        return out.reshape(B, T, -1).transpose(0, 1).contiguous()

    # Generation: the PyTorch ring-buffer attention (TE has no windowed decode kernel to reuse).
    def allocate_inference_cache(self, *args, **kwargs):
        return self._generation_attention.allocate_inference_cache(*args, **kwargs)

    def prefill(self, *args, **kwargs):
        return self._generation_attention.prefill(*args, **kwargs)

    def step(self, *args, **kwargs):
        return self._generation_attention.step(*args, **kwargs)
