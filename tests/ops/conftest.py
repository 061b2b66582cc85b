"""Run the Triton kernels in the interpreter when there is no GPU.

TRITON_INTERPRET is read when a `@triton.jit` function is defined, so it must be set before any
module that defines kernels is imported. pytest imports this conftest before the test modules
of tests/ops, and the RG-LRU package imports its kernels lazily, so setting it here is early
enough. With CUDA present nothing is set: the same tests then run the compiled kernels.

The interpreter runs a custom-combine `tl.associative_scan` one element at a time (~200 us per
element). `_scan_by_slices` keeps its left-to-right order along the scanned axis but combines
whole slices across the other axes at once (combine functions are elementwise by contract), so
the kernel tests finish in minutes instead of an hour.
"""

import os

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _scan_by_slices(self, inputs):
    axis = self.axis
    columns = [np.moveaxis(arg.handle.data, axis, 0) for arg in inputs]
    outputs = [np.empty_like(c) for c in columns]
    acc = None
    for i in range(columns[0].shape[0]):
        current = tuple(self.to_tensor(c[i], arg.dtype) for c, arg in zip(columns, inputs))
        if acc is None:
            acc = current
        else:
            combined = self.combine_fn.fn(*acc, *current)
            acc = combined if isinstance(combined, tuple) else (combined,)
        for out, value in zip(outputs, acc):
            out[i] = value.handle.data
    return [
        self.to_tensor(np.moveaxis(out, 0, axis), arg.dtype) for out, arg in zip(outputs, inputs)
    ]


if os.environ.get("TRITON_INTERPRET") == "1":
    from triton.runtime import interpreter

    # Only where the private hook exists; otherwise the tests are just slower.
    if hasattr(getattr(interpreter, "ScanOps", None), "generic_scan"):
        interpreter.ScanOps.generic_scan = _scan_by_slices
