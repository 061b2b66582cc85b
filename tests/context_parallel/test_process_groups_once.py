"""Context parallelism's process groups are created once per run: one
`initialize_model_parallel` call with the CP size (gloo groups are never freed and each holds
threads), not a CP-less set destroyed and built again."""

from __future__ import annotations

from tests.parallel.harness import launch


def _count_group_builds(context_parallel_size: int) -> dict:
    from megatron.core import parallel_state

    from griffin_megatron import context_parallel

    calls = []
    real = parallel_state.initialize_model_parallel

    def counting(*args, **kwargs):
        calls.append(kwargs.get("context_parallel_size", 1))
        return real(*args, **kwargs)

    parallel_state.initialize_model_parallel = counting
    try:
        context_parallel.ensure_initialized(context_parallel_size=context_parallel_size)
        first = parallel_state.get_context_parallel_world_size()
        context_parallel.ensure_initialized(context_parallel_size=context_parallel_size)
    finally:
        parallel_state.initialize_model_parallel = real
    return dict(calls=calls, cp=first,
                dp_with_cp=parallel_state.get_data_parallel_world_size(with_context_parallel=True))


def test_context_parallel_groups_are_built_once():
    for rank in launch(_count_group_builds, 2, 2):
        assert rank["calls"] == [2]  # one build, with CP; the second call finds it
        assert rank["cp"] == 2 and rank["dp_with_cp"] == 2
