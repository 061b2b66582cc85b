"""A fresh process that uses griffin_megatron as a library (no entry point, no compat.install())
and reports, after each call, what in torch and Megatron is no longer the object it was before.

Usage: python library_calls_worker.py WORK_DIR (the repository on PYTHONPATH). Prints one JSON
line: {"changed": {call: [what changed]}, "tracker": {call: Megatron's RNG tracker class},
"fork_hooks": [every fork hook registered in the process, as module.function]}.
"""

import json
import os
import sys

from tests.compat.fork_spy import record_fork_hooks

# Every fork hook registered from here on is recorded (set before griffin_megatron or Megatron
# is imported).
FORK_HOOKS = record_fork_hooks()

import torch  # noqa: E402
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer  # noqa: E402
from megatron.core.tensor_parallel import random as megatron_random  # noqa: E402

# What griffin_megatron.compat could replace: every torch.cuda name its CPU block stands in for
# (compat/cpu.py _CPU_STAND_INS), the CUDA RNG-state functions that megatron.training's bridge
# replaces, Megatron's RNG-state functions, and the distributed optimizer's fixed methods.
WATCHED = [(torch.cuda, name) for name in (
    "synchronize", "current_device", "current_stream", "default_stream", "Stream", "stream",
    "Event", "get_rng_state", "set_rng_state",
)] + [(megatron_random, "_get_cuda_rng_state"), (megatron_random, "_set_cuda_rng_state")] + [
    (DistributedOptimizer, name) for name in (
        "sharded_param_state_fully_reshardable", "_set_main_param_and_optimizer_states",
        "load_state_dict",
    )
]


def snapshot() -> dict:
    state = {f"{getattr(owner, '__name__', owner)}.{name}": getattr(owner, name)
             for owner, name in WATCHED}
    state["torch function modes"] = torch._C._len_torch_function_stack()
    return state


def changed(before: dict) -> list:
    after = snapshot()
    return sorted(name for name, value in before.items() if after[name] is not value
                  and after[name] != value)


def tracker_kind() -> str:
    tracker = megatron_random._CUDA_RNG_STATE_TRACKER
    return "none" if tracker is None else type(tracker).__name__


def main(work_dir: str) -> None:
    import griffin_megatron as gm
    from griffin_megatron.checkpoint.model import load_model_checkpoint, save_model_checkpoint
    from griffin_megatron.parallel import build_model_chunks
    from tests.fixtures.hf_models import make_hf_model

    before = snapshot()
    report = {"changed": {}, "tracker": {}}

    def check(call: str) -> None:
        report["changed"][call] = changed(before)
        report["tracker"][call] = tracker_kind()

    gm.count_parameters(gm.get_preset("griffin-tiny"))
    check("count_parameters")

    model = gm.from_hf(make_hf_model())
    ids = torch.arange(12)[None] % 300
    with torch.no_grad():
        logits = model(ids, torch.arange(12)[None])
    check("from_hf")

    directory = os.path.join(work_dir, "checkpoint")
    save_model_checkpoint(model, directory)
    check("save_model_checkpoint")
    reloaded = gm.from_hf(make_hf_model(seed=5))
    load_model_checkpoint(reloaded, directory)
    with torch.no_grad():
        same = torch.equal(reloaded(ids, torch.arange(12)[None]), logits)
    check("load_model_checkpoint")

    build_model_chunks(gm.get_preset("hawk-tiny", use_cpu_initialization=True))
    check("build_model_chunks")

    report["reloaded logits equal"] = same
    report["fork_hooks"] = FORK_HOOKS
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
