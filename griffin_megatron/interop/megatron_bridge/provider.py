"""`GriffinModelProvider`: a GriffinConfig that Megatron Bridge can build models from.

Bridge's providers are TransformerConfigs with a `provide()` that returns the model of one
(virtual) pipeline stage; Bridge's `provide_distributed_model()` then does the rest (Float16Module,
DDP, hooks that load HF weights). Two Bridge conventions shape this class:

- Validation is deferred to `finalize()`: Bridge builds a provider from an HF config, lets recipes
  and overrides set fields on it, and only then finalizes (as its own TransformerConfig does).
  `provide()` finalizes too, so no model is ever built from an unchecked config.
- Deep copies share the process groups (`_pg_collection`) instead of copying them: Bridge copies
  providers (recipes, config containers) and a copied process group is unusable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from megatron.bridge.models.model_provider import ModelProviderMixin

from ...config import GriffinConfig
from ...model import GriffinModel


@dataclass
class GriffinModelProvider(GriffinConfig, ModelProviderMixin[GriffinModel]):
    """GriffinConfig + Bridge's ModelProviderMixin; `backend` picks our layer specs ("local" or
    "te", as GriffinModel's argument of that name)."""

    backend: str = "local"

    # Attributes that deep copies share with the original (live process groups).
    _SHARED_ON_COPY = frozenset({"_pg_collection"})

    def __post_init__(self) -> None:
        # Deferred to finalize(), as Bridge's configs do: fields may still change.
        pass

    def finalize(self) -> None:
        """Run GriffinConfig's validation and derived fields (idempotent)."""
        GriffinConfig.__post_init__(self)

    def provide(
        self,
        pre_process: Optional[bool] = None,
        post_process: Optional[bool] = None,
        vp_stage: Optional[int] = None,
    ) -> GriffinModel:
        self.finalize()
        return GriffinModel(
            self,
            backend=self.backend,
            pre_process=pre_process,
            post_process=post_process,
            vp_stage=vp_stage,
            pg_collection=getattr(self, "_pg_collection", None),
        )

    def __deepcopy__(self, memo):
        result = self.__class__.__new__(self.__class__)
        memo[id(self)] = result
        for key, value in self.__dict__.items():
            shared = key in self._SHARED_ON_COPY
            setattr(result, key, value if shared else copy.deepcopy(value, memo))
        return result
