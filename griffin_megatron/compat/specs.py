"""Layer-spec forms that changed between Megatron-Core releases."""

from __future__ import annotations

import functools
import logging
from typing import Type

from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec


def mlp_slot(mlp_class: Type[MLP], submodules: MLPSubmodules, ffn_hidden_size: int):
    """The `mlp` slot of a TransformerLayer spec for `mlp_class` (MLP or a subclass), in the form
    the installed release builds without deprecation warnings.

    From 0.18, TransformerLayer calls the slot with its process groups, and rewraps a
    `ModuleSpec(module=MLP)` into `MLP.as_mlp_submodule` with a warning per layer; 0.19's MLP
    also warns when `ffn_hidden_size` is not passed. Releases before 0.18 build the slot as a
    ModuleSpec whose params reach MLP's constructor.
    """
    if hasattr(mlp_class, "as_mlp_submodule"):
        # Only MLP itself would be rewrapped by TransformerLayer: a subclass given as a
        # ModuleSpec would not be called with the process groups at all.
        return functools.partial(
            mlp_class.as_mlp_submodule, submodules=submodules, ffn_hidden_size=ffn_hidden_size
        )
    return ModuleSpec(
        module=mlp_class, submodules=submodules, params={"ffn_hidden_size": ffn_hidden_size}
    )


# Megatron-Core 0.16-0.17's TransformerLayer warns "Unknown MLP type: <class '...ModuleSpec'>.
# Using default kwargs." once per layer for any MLP subclass given as a ModuleSpec (it prints the
# spec's type, not the module's). The default it falls back to (the global tensor-parallel group)
# is what our MLP uses, so the warning says nothing; 0.18 replaced this code.
_UNKNOWN_MLP_WARNING = "Unknown MLP type: <class 'megatron.core.transformer.spec_utils.ModuleSpec'>"


class _DropUnknownMlpWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_UNKNOWN_MLP_WARNING)


def quiet_unknown_mlp_warning() -> bool:
    """Drop that warning on the releases that print it; returns whether it applied."""
    from .versions import megatron_core_in

    if not megatron_core_in((0, 16), (0, 18)):
        return False
    layer_logger = logging.getLogger("megatron.core.transformer.transformer_layer")
    if not any(isinstance(f, _DropUnknownMlpWarning) for f in layer_logger.filters):
        layer_logger.addFilter(_DropUnknownMlpWarning())
    return True
