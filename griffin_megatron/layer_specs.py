"""Megatron-Core layer specs for Hawk and Griffin.

Every layer is an ordinary `TransformerLayer` (norm -> temporal block -> residual -> norm -> MLP
-> residual, exactly Griffin's residual block); only the `self_attention` slot differs by layer
type. The block spec lists one layer spec per layer of this pipeline stage, indexed by global
layer number, the same pattern as Megatron-Core's gated-delta-net hybrid specs, so GPTModel's
pipeline, virtual-pipeline and uneven-stage machinery applies unchanged.

Two backends, chosen by one argument:
- "local": pure PyTorch (CPU and GPU): Megatron's parallel linears, our RMSNorm and our
  sliding-window attention.
- "te": Transformer Engine linears with fused RMSNorm and TE's windowed DotProductAttention.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_layer import (
    TransformerLayer,
    TransformerLayerSubmodules,
    get_transformer_layer_offset,
)

from .config import ATTENTION, RECURRENT, GriffinConfig
from .modules.conv1d import CausalConv1d
from .modules.local_attention import BiasFreeColumnParallelLinear, LocalWindowedAttention
from .modules.norm import GriffinRMSNorm
from .modules.recurrent_block import RecurrentBlock, RecurrentBlockSubmodules
from .modules.rglru import RGLRU

BACKENDS = ("local", "te")
_TE = "griffin_megatron.modules.te_modules"
_MEGATRON_TE = "megatron.core.extensions.transformer_engine"


def _recurrent_layer(norm, fused_norm, linear_in, linear_out, mlp_in, mlp_out) -> ModuleSpec:
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=IdentityOp if fused_norm else norm,
            self_attention=ModuleSpec(
                module=RecurrentBlock,
                submodules=RecurrentBlockSubmodules(
                    linear_in=linear_in, conv=CausalConv1d, rg_lru=RGLRU, linear_out=linear_out
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=IdentityOp if fused_norm else norm,
            mlp=ModuleSpec(module=MLP, submodules=MLPSubmodules(linear_fc1=mlp_in, linear_fc2=mlp_out)),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def _attention_layer(norm, fused_norm, linear_qkv, core_attention, linear_proj, mlp_in, mlp_out):
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=IdentityOp if fused_norm else norm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": AttnMaskType.causal},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=linear_qkv,
                    core_attention=core_attention,
                    linear_proj=linear_proj,
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=IdentityOp if fused_norm else norm,
            mlp=ModuleSpec(module=MLP, submodules=MLPSubmodules(linear_fc1=mlp_in, linear_fc2=mlp_out)),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def _local_layer_specs() -> Dict[str, ModuleSpec]:
    norm, col, row = GriffinRMSNorm, ColumnParallelLinear, RowParallelLinear
    return {
        RECURRENT: _recurrent_layer(norm, False, col, row, col, row),
        ATTENTION: _attention_layer(
            norm, False, BiasFreeColumnParallelLinear, LocalWindowedAttention, row, col, row
        ),
    }


def _te_layer_specs() -> Dict[str, ModuleSpec]:
    # Module paths as (module, name) tuples: Transformer Engine is imported only when built.
    norm_col = ModuleSpec(module=(_MEGATRON_TE, "TELayerNormColumnParallelLinear"))
    row = ModuleSpec(module=(_MEGATRON_TE, "TERowParallelLinear"))
    return {
        RECURRENT: _recurrent_layer(None, True, norm_col, row, norm_col, row),
        ATTENTION: _attention_layer(
            None,
            True,
            ModuleSpec(module=(_TE, "BiasFreeTELayerNormColumnParallelLinear")),
            ModuleSpec(module=(_TE, "GriffinTEDotProductAttention")),
            row,
            norm_col,
            row,
        ),
    }


_LAYER_SPECS: Dict[str, Callable[[], Dict[str, ModuleSpec]]] = {
    "local": _local_layer_specs,
    "te": _te_layer_specs,
}
_FINAL_NORM = {"local": GriffinRMSNorm, "te": ModuleSpec(module=(_MEGATRON_TE, "TENorm"))}


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}; use 'local' or 'te'.")
    if backend == "te":
        try:
            import transformer_engine  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "backend='te' needs NVIDIA Transformer Engine, which is not installed; install "
                "it on a CUDA machine with `pip install 'griffin-megatron[te]'` or use "
                "backend='local'."
            ) from error


def get_griffin_layer_spec(layer_type: str, backend: str = "local") -> ModuleSpec:
    """The TransformerLayer spec for one layer type ('R' or 'A')."""
    check_backend(backend)
    return _LAYER_SPECS[backend]()[layer_type]


def get_griffin_block_spec(
    config: GriffinConfig,
    backend: str = "local",
    vp_stage: Optional[int] = None,
    pp_rank: Optional[int] = None,
) -> TransformerBlockSubmodules:
    """Layer specs of this pipeline stage (and virtual stage), chosen by global layer index."""
    check_backend(backend)
    specs = _LAYER_SPECS[backend]()
    if config.pipeline_model_parallel_layout is not None:
        from megatron.core.transformer.enums import LayerType

        local_ids = config.pipeline_model_parallel_layout.get_layer_id_list(
            layer_type=LayerType.decoder, vp_stage=vp_stage, pp_rank=pp_rank
        )
    else:
        offset = get_transformer_layer_offset(config, vp_stage=vp_stage, pp_rank=pp_rank)
        count = get_num_layers_to_build(config, vp_stage=vp_stage, pp_rank=pp_rank)
        local_ids = range(offset, offset + count)
    return TransformerBlockSubmodules(
        layer_specs=[specs[config.layer_type(i)] for i in local_ids],
        layer_norm=_FINAL_NORM[backend],
    )
