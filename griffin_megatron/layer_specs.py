"""Megatron-Core layer specs for Hawk and Griffin.

Every layer is a `GriffinLayer`: Megatron-Core's `TransformerLayer` (norm -> temporal block ->
residual -> norm -> MLP -> residual, exactly Griffin's residual block) with its own generation
step (modules/griffin_layer.py); only the `self_attention` slot differs by layer type. The block
spec lists one layer spec per layer of this pipeline stage, indexed by global layer number, the
same pattern as Megatron-Core's gated-delta-net hybrid specs, so GPTModel's pipeline,
virtual-pipeline and uneven-stage machinery applies unchanged.

Two backends, chosen by one argument:
- "local": pure PyTorch (CPU and GPU): Megatron's parallel linears, our RMSNorm and our
  sliding-window attention.
- "te": Transformer Engine linears with fused RMSNorm and TE's windowed DotProductAttention.
  Its distributed checkpoints use the local backend's keys (FUSED_NORM_CHECKPOINT_KEYS), so a
  checkpoint written by either backend loads into the other and exports to HF.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.transformer.attention import SelfAttentionSubmodules
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_layer import (
    TransformerLayerSubmodules,
    get_transformer_layer_offset,
)

from .compat.specs import mlp_slot
from .errors import ConfigError, MissingDependencyError
from .config import ATTENTION, RECURRENT, GriffinConfig
from .modules.attention_block import GriffinSelfAttention
from .modules.conv1d import CausalConv1d
from .modules.griffin_layer import GriffinLayer
from .modules.local_attention import BiasFreeColumnParallelLinear, LocalWindowedAttention
from .modules.norm import GriffinRMSNorm
from .modules.parallel_linear import (
    ColumnParallelLinearWithStep,
    MLPWithStep,
    RowParallelLinearWithStep,
)
from .modules.recurrent_block import RecurrentBlock, RecurrentBlockSubmodules
from .modules.rglru import RGLRU

BACKENDS = ("local", "te")

# The te backend fuses each pre-norm into the linear that reads it, so its norm weights live at
# `<linear>.layer_norm_weight`. Distributed checkpoints store them under the local backend's
# names (Megatron's per-layer key map), so either backend loads the other's checkpoints.
FUSED_NORM_CHECKPOINT_KEYS = {
    "self_attention.linear_in.layer_norm_": "input_layernorm.",  # recurrent layers
    "self_attention.linear_qkv.layer_norm_": "input_layernorm.",  # attention layers
    "mlp.linear_fc1.layer_norm_": "pre_mlp_layernorm.",
}


def _residual_layer(norm, temporal: ModuleSpec, mlp_in, mlp_out, keys_map, ffn_hidden_size) -> ModuleSpec:
    """Griffin's residual block; norm=None when the linears after it fuse the norm.
    ffn_hidden_size: the MLP's hidden width (one branch of the gated MLP)."""
    return ModuleSpec(
        module=GriffinLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=norm or IdentityOp,
            self_attention=temporal,
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=norm or IdentityOp,
            mlp=mlp_slot(
                MLPWithStep, MLPSubmodules(linear_fc1=mlp_in, linear_fc2=mlp_out), ffn_hidden_size
            ),
            mlp_bda=get_bias_dropout_add,
            sharded_state_dict_keys_map=dict(keys_map),
        ),
    )


def _recurrent_block(linear_in, linear_out) -> ModuleSpec:
    return ModuleSpec(
        module=RecurrentBlock,
        submodules=RecurrentBlockSubmodules(
            linear_in=linear_in, conv=CausalConv1d, rg_lru=RGLRU, linear_out=linear_out
        ),
    )


def _attention_block(linear_qkv, core_attention, linear_proj) -> ModuleSpec:
    # Megatron's SelfAttention calls linear_qkv and core_attention directly (not through
    # build_module), so those two must be classes, not ModuleSpecs.
    return ModuleSpec(
        module=GriffinSelfAttention,
        params={"attn_mask_type": AttnMaskType.causal},
        submodules=SelfAttentionSubmodules(
            linear_qkv=linear_qkv, core_attention=core_attention, linear_proj=linear_proj
        ),
    )


def _local_layer_specs(ffn_hidden_size: int) -> Dict[str, ModuleSpec]:
    norm, col, row = GriffinRMSNorm, ColumnParallelLinearWithStep, RowParallelLinearWithStep
    return {
        RECURRENT: _residual_layer(norm, _recurrent_block(col, row), col, row, {}, ffn_hidden_size),
        ATTENTION: _residual_layer(
            norm,
            _attention_block(BiasFreeColumnParallelLinear, LocalWindowedAttention, row),
            col,
            row,
            {},
            ffn_hidden_size,
        ),
    }


def fused_norm_layer_specs(
    norm_linear, row_linear, norm_qkv, core_attention, ffn_hidden_size: int
) -> Dict[str, ModuleSpec]:
    """Layer specs whose pre-norms are fused into the following column-parallel linear
    (`norm_linear` and, without a bias, `norm_qkv`): the te backend's structure."""
    keys = FUSED_NORM_CHECKPOINT_KEYS
    return {
        RECURRENT: _residual_layer(
            None, _recurrent_block(norm_linear, row_linear), norm_linear, row_linear, keys,
            ffn_hidden_size,
        ),
        ATTENTION: _residual_layer(
            None, _attention_block(norm_qkv, core_attention, row_linear), norm_linear, row_linear,
            keys, ffn_hidden_size,
        ),
    }


def _te_layer_specs(ffn_hidden_size: int) -> Dict[str, ModuleSpec]:
    # Imported here: Transformer Engine is needed only when the te backend is built.
    from .modules.te_modules import (
        BiasFreeTELayerNormColumnParallelLinear,
        GriffinTEDotProductAttention,
        TELayerNormColumnParallelLinearWithStep,
        TERowParallelLinearWithStep,
    )

    return fused_norm_layer_specs(
        TELayerNormColumnParallelLinearWithStep,
        TERowParallelLinearWithStep,
        BiasFreeTELayerNormColumnParallelLinear,
        GriffinTEDotProductAttention,
        ffn_hidden_size,
    )


def _final_norm(backend: str):
    if backend == "te":
        from megatron.core.extensions.transformer_engine import TENorm

        return TENorm
    return GriffinRMSNorm


# backend -> (MLP hidden width -> layer spec per layer type)
_LAYER_SPECS: Dict[str, Callable[[int], Dict[str, ModuleSpec]]] = {
    "local": _local_layer_specs,
    "te": _te_layer_specs,
}


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not one of {BACKENDS}; use 'local' or 'te'.")
    if backend == "te":
        try:
            import transformer_engine  # noqa: F401
        except ImportError as error:
            raise MissingDependencyError(
                "backend='te' needs NVIDIA Transformer Engine, which is not installed; install "
                "it on a CUDA machine with `pip install 'griffin-megatron[te]'` or use "
                "backend='local'."
            ) from error


def get_griffin_layer_spec(
    layer_type: str, config: GriffinConfig, backend: str = "local"
) -> ModuleSpec:
    """The GriffinLayer spec for one layer type ('R' or 'A') of the model `config`."""
    check_backend(backend)
    return _LAYER_SPECS[backend](config.ffn_hidden_size)[layer_type]


def stage_layer_ids(
    config: GriffinConfig, vp_stage: Optional[int] = None, pp_rank: Optional[int] = None
) -> Sequence[int]:
    """Global indices of the layers one pipeline stage (and virtual stage) builds, by
    Megatron-Core's own stage split (even, uneven first/last, interleaved, or explicit layout)."""
    if config.pipeline_model_parallel_layout is not None:
        from megatron.core.transformer.enums import LayerType

        return config.pipeline_model_parallel_layout.get_layer_id_list(
            layer_type=LayerType.decoder, vp_stage=vp_stage, pp_rank=pp_rank
        )
    offset = get_transformer_layer_offset(config, vp_stage=vp_stage, pp_rank=pp_rank)
    count = get_num_layers_to_build(config, vp_stage=vp_stage, pp_rank=pp_rank)
    return range(offset, offset + count)


def get_griffin_block_spec(
    config: GriffinConfig,
    backend: str = "local",
    vp_stage: Optional[int] = None,
    pp_rank: Optional[int] = None,
) -> TransformerBlockSubmodules:
    """Layer specs of this pipeline stage (and virtual stage), chosen by global layer index."""
    check_backend(backend)
    specs = _LAYER_SPECS[backend](config.ffn_hidden_size)
    return TransformerBlockSubmodules(
        layer_specs=[specs[config.layer_type(i)] for i in stage_layer_ids(config, vp_stage, pp_rank)],
        layer_norm=_final_norm(backend),
    )
