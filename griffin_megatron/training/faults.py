"""Fault injection for tests of the driver's fault handling, switched on by environment
variables only (nothing in normal runs reads them):

    GRIFFIN_MEGATRON_TEST_NAN_AT_ITERATION=N   the loss of iteration N is NaN (so are its gradients)
"""

from __future__ import annotations

import contextlib
import os

from megatron.core.utils import unwrap_model

NAN_AT_ITERATION_ENV = "GRIFFIN_MEGATRON_TEST_NAN_AT_ITERATION"


def _poison(module, args, output):
    return output * float("nan")


@contextlib.contextmanager
def injected(iteration: int, chunks):
    """Within this block, iteration `iteration` computes a NaN loss if the test asked for it."""
    wanted = os.environ.get(NAN_AT_ITERATION_ENV)
    if wanted is None or int(wanted) != iteration:
        yield
        return
    handles = [
        model.register_forward_hook(_poison)
        for model in unwrap_model(list(chunks))
        if model.post_process
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
