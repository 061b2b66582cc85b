"""A record of every fork hook a process registers: `record_fork_hooks()` must run before
griffin_megatron or Megatron is imported; the returned list then fills with one
"module.function" per hook registered through os.register_at_fork."""

import os
from typing import List


def record_fork_hooks() -> List[str]:
    hooks: List[str] = []
    register = os.register_at_fork

    def recording_register_at_fork(**kwargs):
        hooks.extend(f"{getattr(hook, '__module__', '')}.{getattr(hook, '__qualname__', hook)}"
                     for hook in kwargs.values())
        return register(**kwargs)

    os.register_at_fork = recording_register_at_fork
    return hooks
