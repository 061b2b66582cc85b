"""The parameter dtypes that the commands take by name (`--dtype fp32`), and the torch dtype
each name means. Parsers list the names without importing torch (`--help` stays fast); torch is
imported when a name is turned into a dtype."""

from __future__ import annotations

# name -> attribute of torch
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# The dtypes a model is built in to run (generate, evaluate, lm-eval): `loading.load_model` sets
# Megatron's bf16 flag from the dtype, and fp16 would need its fp16 settings, which nothing here
# sets. `convert` also writes fp16 weights.
MODEL_DTYPES = ("fp32", "bf16")


def torch_dtype(name: str):
    """The torch dtype named `name` (a key of DTYPES)."""
    import torch

    return getattr(torch, DTYPES[name])


__all__ = ["DTYPES", "MODEL_DTYPES", "torch_dtype"]
