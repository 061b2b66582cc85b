"""Importing griffin_megatron.interop.megatron_bridge where it cannot work stops with one
sentence naming what is missing and how to get it (both CI legs: py311 has no Bridge, py312 has
Bridge but no Transformer Engine)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _import_in_a_fresh_process() -> subprocess.CompletedProcess:
    code = (
        "from griffin_megatron.errors import UserError\n"
        "try:\n"
        "    import griffin_megatron.interop.megatron_bridge\n"
        "except UserError as error:\n"
        "    print('REFUSAL ' + type(error).__name__ + ': ' + str(error))\n"
        "    raise SystemExit(2)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)


def test_missing_bridge_or_transformer_engine_is_one_sentence():
    bridge = importlib.util.find_spec("megatron.bridge") is not None
    te = importlib.util.find_spec("transformer_engine") is not None
    if bridge and te:
        pytest.skip("Bridge and Transformer Engine are both installed: the import works")
    done = _import_in_a_fresh_process()
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    # Bridge logs to stdout while it imports; the refusal is the marked line.
    lines = [line for line in done.stdout.splitlines() if line.startswith("REFUSAL ")]
    assert len(lines) == 1, done.stdout[-3000:]
    message = lines[0][len("REFUSAL "):]
    assert message.startswith("MissingDependencyError: ")
    if bridge:
        assert "Transformer Engine" in message and "lora_layers.py" in message, message
    else:
        assert "megatron.bridge" in message and "megatron-bridge==0.6.2" in message, message
