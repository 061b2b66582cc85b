"""One plan: a recipe on a cluster, checked against the layout rules, with memory and FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import GriffinConfig
from ..flops import griffin_forward_flops, training_flops
from ..presets import get_preset
from ..recipes import (
    Cluster,
    RecipeError,
    architecture_overrides,
    load_recipe,
    recipe_path,
    stated_cluster,
    validate_recipe,
)
from .layout import Layout
from .memory import StageMemory, busiest, memory_violation, plan_memory
from .params import ParameterCounts, count_model_parameters
from .rules import LayoutError, Violation, check_layout, error_for

DEFAULT_RESERVE = 0.10  # CUDA context, NCCL buffers and allocator fragmentation


@dataclass(frozen=True)
class Plan:
    source: Path
    recipe: Dict[str, Any]
    config: GriffinConfig
    layout: Layout
    cluster: Optional[Cluster]
    gpu_memory_gb: float
    reserve: float
    counts: ParameterCounts
    stages: List[StageMemory]
    alternative: str  # what the other activation figure assumes
    alternative_stages: List[StageMemory]
    forward_flops: Dict[str, int]  # one sequence, by part

    @property
    def step_flops(self) -> int:
        return training_flops(self.forward_flops, self.layout.global_batch_size)

    @property
    def memory_problem(self) -> Optional[str]:
        return memory_violation(self.stages, self.gpu_memory_gb, self.reserve)

    @property
    def busiest(self) -> StageMemory:
        return busiest(self.stages)


def _alternative(layout: Layout):
    if layout.recompute_granularity:
        return "without recompute", replace(
            layout, recompute_granularity=None, recompute_method=None, recompute_num_layers=None
        )
    return "with full recompute (uniform, 1 layer)", replace(
        layout, recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1
    )


def make_plan(
    recipe_source,
    gpus: Optional[int] = None,
    gpu_memory_gb: Optional[float] = None,
    overrides: Optional[Dict[str, Any]] = None,
    vocab_size: Optional[int] = None,
    reserve: float = DEFAULT_RESERVE,
) -> Plan:
    """Load a recipe (name or path), apply overrides, check its layout and size it.

    Raises LayoutError when a layout rule is broken; memory that does not fit is reported by
    `Plan.memory_problem` (the caller decides whether that is an error).
    """
    source = recipe_path(recipe_source)
    recipe = {**load_recipe(source), **(overrides or {})}
    validate_recipe(recipe, f"{source} with overrides" if overrides else str(source))
    if "preset" not in recipe:
        raise RecipeError(f"{source} names no model: add 'preset: <name>' (griffin-megatron info --list).")
    cluster = stated_cluster(source)
    if gpus is None or gpu_memory_gb is None:
        if cluster is None:
            raise RecipeError(
                f"{source} states no cluster (a '# cluster: N nodes x G NAME-MGB' line); pass "
                "--gpus and --gpu-memory-gb."
            )
        gpus = gpus if gpus is not None else cluster.gpus
        gpu_memory_gb = gpu_memory_gb if gpu_memory_gb is not None else cluster.memory_gb
    extra = {"vocab_size": vocab_size} if vocab_size else {}
    config = get_preset(recipe["preset"], **architecture_overrides(recipe), **extra)
    layout = Layout.from_recipe(recipe, gpus, config)
    check_layout(config, layout)
    # Counted on the local backend's meta model (TE cannot be built without a GPU): the te
    # backend holds the same tensors, its norm weights inside the linears that follow them.
    counts = count_model_parameters(config)
    label, other = _alternative(layout)
    return Plan(
        source=source,
        recipe=recipe,
        config=config,
        layout=layout,
        cluster=cluster if cluster is not None and cluster.gpus == gpus else None,
        gpu_memory_gb=gpu_memory_gb,
        reserve=reserve,
        counts=counts,
        stages=plan_memory(config, layout, counts),
        alternative=label,
        alternative_stages=plan_memory(config, other, counts),
        forward_flops=griffin_forward_flops(config, layout.seq_length),
    )


def memory_error(plan: Plan) -> LayoutError:
    return error_for([Violation("memory", plan.memory_problem)])


__all__ = ["DEFAULT_RESERVE", "LayoutError", "Plan", "make_plan", "memory_error"]
