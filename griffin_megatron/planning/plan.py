"""One plan: a recipe on a cluster, checked by the config's layout rules, with memory and FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import GriffinConfig, GriffinConfigError, Violation, check_batch, layout_error
from ..errors import ConfigError
from ..flops import griffin_forward_flops, training_flops
from ..options import global_batch_size, options_namespace
from ..recipes import Cluster, RecipeError, load_recipe, recipe_path, stated_cluster, validate_recipe
from .layout import Layout
from .memory import StageMemory, busiest, memory_violation, plan_memory
from .params import ParameterCounts, count_model_parameters

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

    The recipe becomes the options `train --config RECIPE` would run with (the option table's
    defaults for every key it leaves out) and the same GriffinConfig, so the config's own layout
    rules decide, exactly as for `train`. Raises GriffinConfigError (a ConfigError) naming the
    broken rule; memory that does not fit is reported by `Plan.memory_problem` (the caller
    decides whether that is an error).
    """
    from ..run_config import build_model_config

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
    if not gpu_memory_gb > 0:
        raise ConfigError(f"--gpu-memory-gb={gpu_memory_gb:g} must be positive: the memory of one GPU in GiB.")
    args = options_namespace(recipe)
    if vocab_size is not None:
        if vocab_size < 1:
            raise ConfigError(f"--vocab-size={vocab_size} must be a positive integer.")
        config = build_model_config(args, vocab_size)
    else:
        config = build_model_config(args)
    from ..context_parallel.layout import check_context_parallel_layout

    check_context_parallel_layout(config, args.backend)
    args.global_batch_size = global_batch_size(args, gpus)
    check_batch(config, gpus, args.micro_batch_size, args.global_batch_size)
    layout = Layout.of(config, args, gpus)
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


def memory_error(plan: Plan) -> GriffinConfigError:
    return layout_error([Violation("memory", plan.memory_problem)])


__all__ = ["DEFAULT_RESERVE", "Plan", "make_plan", "memory_error"]
