"""Runs the distributed-optimizer checkpoint scenario on a Megatron-Core whose sources carry
patches/megatron-core-<release>-distopt-*.patch, WITHOUT griffin_megatron's in-process fixes:
the patched release alone must save later buckets right, load with PyTorch's Adam, and give each
parameter its own `step`. Usage: python patched_distopt_worker.py CHECKPOINT_DIR (the patched
megatron first on PYTHONPATH). Prints "patched release OK" on success."""

import sys


def main(directory: str) -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    from griffin_megatron.compat import cpu, distributed_optimizer
    from griffin_megatron.checkpoint.distributed import load_checkpoint, save_checkpoint
    from tests.compat.test_distributed_optimizer_fixes import (
        build, one_step, saved_params_match_weights, steps,
    )

    # The CPU bridges only: checkpoint/distributed.py's block applies no fix here.
    distributed_optimizer.needed = lambda: False
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    parallel_state.initialize_model_parallel()
    cpu.model_parallel_manual_seed(1234)
    with cpu.cuda_requests_on_cpu():
        chunks, optimizer = build()
        assert len(chunks[0].buffers[0].buckets) == 2
        one_step(chunks, optimizer)
        fixed = saved_params_match_weights(
            DistributedOptimizer.sharded_param_state_fully_reshardable, chunks, optimizer
        )
        assert all(fixed), "bucket offsets: later buckets are still saved at wrong offsets"
        save_checkpoint(directory, chunks, optimizer)
        fresh_chunks, fresh = build()
        load_checkpoint(directory, fresh_chunks, fresh)  # KeyError: 'step' without the fix
        loaded = steps(fresh)
        assert len({id(step) for step in loaded}) == len(loaded), "one step tensor is shared"
        one_step(fresh_chunks, fresh)
        assert all(step.item() == 2 for step in steps(fresh))
    print("patched release OK")


if __name__ == "__main__":
    main(sys.argv[1])
