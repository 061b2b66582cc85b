"""Each CPU bridge and upstream fix of griffin_megatron.megatron_training, exercised through the
Megatron-LM code that needs it, without and then with the bridge, in one fresh process (the
checks touch process-wide Megatron state). Prints {check: {"without": ..., "with": ...}} as JSON.

    python -m tests.megatron_training.bridge_checks
"""

from __future__ import annotations

import json
import sys
import traceback


VERBOSE = "-v" in sys.argv  # print each failure's traceback


def outcome(call) -> str:
    """'ok', or the exception type that the call raised."""
    try:
        call()
    except BaseException as error:  # SystemExit too: Megatron exits when make fails
        if VERBOSE:
            traceback.print_exc()
        return type(error).__name__
    return "ok"


def both(bridge, call) -> dict:
    without = outcome(call)
    with bridge():
        return {"without": without, "with": outcome(call)}


def main() -> int:
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state, tensor_parallel
    from megatron.training import arguments, global_vars, initialize, training

    from griffin_megatron import compat
    from griffin_megatron.compat import megatron_training_cpu as cpu_bridges
    from griffin_megatron.compat import megatron_training_fixes as upstream_fixes

    compat.install()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    sys.argv = [sys.argv[0]]
    args = arguments.parse_args()
    # What validate_args derives from the parsed options (these checks skip its other checks).
    args.virtual_pipeline_model_parallel_size = None
    args.expert_tensor_parallel_size = args.expert_tensor_parallel_size or 1
    global_vars.set_args(args)
    results = {}

    seen = {}
    real_initialize = training.initialize_megatron
    training.initialize_megatron = lambda *a, **kw: seen.update(kw)

    def initialize_call():
        seen.clear()
        training.initialize_megatron()
        if not seen.get("allow_no_cuda"):
            real_initialize(**seen)  # what pretrain() would run: asserts CUDA

    results["initialize_megatron"] = both(cpu_bridges.initialize_without_cuda, initialize_call)
    training.initialize_megatron = real_initialize

    def groups_call():
        initialize._initialize_distributed(None, None, None)
        assert parallel_state.model_parallel_is_initialized()

    results["model_parallel_groups"] = both(cpu_bridges.model_parallel_groups_without_devices,
                                            groups_call)

    def seed_call():
        tracker = tensor_parallel.random._CUDA_RNG_STATE_TRACKER  # None until something seeds
        if tracker is not None:
            tracker.reset()  # forget the seeds of the call before
        initialize._set_random_seed(1234)
        with tensor_parallel.get_cuda_rng_tracker().fork():
            torch.rand(1)

    results["rng_tracker_seed"] = both(cpu_bridges.rng_tracker_seeding_without_devices, seed_call)

    def rng_state_call():
        torch.cuda.set_rng_state(torch.cuda.get_rng_state())
        assert torch.equal(torch.cuda.get_rng_state(), torch.get_rng_state())

    results["cuda_rng_state"] = both(cpu_bridges.cuda_rng_state_is_cpu_state, rng_state_call)
    results["device_arch_version"] = both(cpu_bridges.no_device_architecture,
                                          lambda: arguments.get_device_arch_version())
    results["compiled_dataset_helpers"] = both(upstream_fixes.no_make_for_compiled_helpers,
                                               lambda: initialize._compile_dependencies())
    results["dp_reshardable_load"] = both(upstream_fixes.dp_reshardable_load_without_grad,
                                          dp_reshardable_round_trip())
    print(json.dumps(results))
    return 0


def dp_reshardable_round_trip():
    """A fp32 model's distributed-optimizer state, read out and loaded back in the layout that
    Megatron-LM's torch_dist checkpoints use by default (dp_reshardable)."""
    from megatron.core.optimizer import OptimizerConfig

    from griffin_megatron import runtime
    from griffin_megatron.parallel import build_model_chunks, build_optimizer, default_ddp_config
    from griffin_megatron.presets import get_preset

    runtime.ensure_initialized()  # model-parallel groups, if the checks above left none
    config = get_preset("hawk-tiny", use_cpu_initialization=True)
    chunks = build_model_chunks(config, ddp_config=default_ddp_config(use_distributed_optimizer=True))
    optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-3,
                                                        use_distributed_optimizer=True))
    inner = getattr(optimizer, "chained_optimizers", [optimizer])[0]
    inner._init_optimizer_states_with_dummy_values()
    state = inner.get_parameter_state_dp_reshardable()
    # As a torch_dist load hands it over (sharded_param_state_dp_reshardable): per parameter,
    # its tensors and a padding flag, without the buffer offsets.
    for gbuf_state in state.values() if isinstance(state, dict) else state:
        if not isinstance(gbuf_state, dict):
            continue
        for buckets in gbuf_state.values():
            for bucket in buckets:
                for tensors in bucket:
                    tensors.pop("gbuf_local_start", None)
                    tensors.pop("gbuf_local_end", None)
                    tensors["padding"] = False
    return lambda: inner.load_parameter_state_from_dp_reshardable(state)


if __name__ == "__main__":
    sys.exit(main())
