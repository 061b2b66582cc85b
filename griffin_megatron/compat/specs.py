"""Layer-spec forms that changed between Megatron-Core releases."""

from __future__ import annotations

import functools

from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec


def mlp_slot(submodules: MLPSubmodules, ffn_hidden_size: int):
    """The `mlp` slot of a TransformerLayer spec, in the form the installed release builds
    without deprecation warnings.

    From 0.18, TransformerLayer calls the slot with its process groups, and rewraps a
    `ModuleSpec(module=MLP)` into `MLP.as_mlp_submodule` with a warning per layer; 0.19's MLP
    also warns when `ffn_hidden_size` is not passed. Releases before 0.18 build the slot as a
    ModuleSpec whose params reach MLP's constructor.
    """
    if hasattr(MLP, "as_mlp_submodule"):
        return functools.partial(
            MLP.as_mlp_submodule, submodules=submodules, ffn_hidden_size=ffn_hidden_size
        )
    return ModuleSpec(module=MLP, submodules=submodules, params={"ffn_hidden_size": ffn_hidden_size})
