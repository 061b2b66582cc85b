"""The GPU validation script's dry run (benchmarks/gpu_validate.sh --dry-run: every step at tiny
sizes on this CPU), so the script and the benchmarks it calls cannot rot, and the Transformer
baseline's parameter matching."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The CLI the owners of these two benchmarks agreed on; until a script has it, its step must be
# a failed row of the table (and the rest of the run must go on).
AGREED_CLI = ("--tiny", "--markdown")
OTHERS = {"2": ROOT / "benchmarks" / "rglru.py", "3": ROOT / "benchmarks" / "local_attention.py"}


def has_agreed_cli(script: Path) -> bool:
    return script.is_file() and all(option in script.read_text() for option in AGREED_CLI)


def table_rows(text: str) -> dict:
    """The summary table's rows by step number (the steps' own tables follow it)."""
    rows, inside = {}, False
    for line in text.splitlines():
        if line.startswith("| step |"):
            inside = True
        elif inside and not line.startswith("|"):
            break
        elif inside and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def test_gpu_validate_dry_run(tmp_path):
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu_validate.sh", "--dry-run"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert results.read_bytes() == before  # a dry run leaves RESULTS.md alone
    table = (tmp_path / "gpu_validate_dry_run.md").read_text()
    rows = table_rows(table)
    assert re.search(r"^Machine: .* CPU, \d+ cores \| Python 3", table, re.MULTILINE), table[:500]
    assert sorted(rows) == ["1", "1b", "2", "3", "4", "5"], done.stdout[-3000:]
    expected = {"1": True, "1b": True, "4": True, "5": True,
                **{n: has_agreed_cli(script) for n, script in OTHERS.items()}}
    for number, passes in expected.items():
        status = rows[number][2]
        assert (status == "passed") is passes, (rows[number], done.stdout[-3000:])
    assert done.returncode == (0 if all(expected.values()) else 1)
    # Steps 1 and 1b selected the GPU tests (they skip here): the kernels' and the others.
    for number, test_file in (("1", "tests/ops/test_rglru_triton.py"),
                              ("1b", "tests/recipes/test_activation_memory_gpu.py")):
        assert re.fullmatch(r"\d+ skipped, \d+ deselected.*", rows[number][4]), rows[number]
        assert test_file in (tmp_path / f"step{number}.log").read_text()
    # Steps 4 and 5: Griffin against the Transformer, with the ratio in the headline.
    assert "| griffin-tiny |" in table and "| gpt (global MQA) |" in table
    assert re.search(r"Griffin / GPT training tokens/s 64: x\d", rows["4"][4]), rows["4"]
    assert re.search(r"decode tok/s \(context x batch\) 256x16: x\d", rows["5"][4]), rows["5"]
    assert "| mqa-transformer |" in table


@pytest.mark.parametrize("preset", ["griffin-tiny", "griffin-400m"])
def test_transformer_baseline_has_griffins_parameter_count(preset):
    from benchmarks.gpt_baseline import mqa_matched_to

    from griffin_megatron.presets import count_parameters, get_preset

    config = get_preset(preset)
    shape = mqa_matched_to(config)
    assert shape.num_query_groups == 1 and shape.hidden_size == config.hidden_size
    step = 3 * config.hidden_size * config.num_layers * 64  # one 64-channel MLP step
    assert abs(shape.parameters() - count_parameters(config)) <= step / 2


def test_transformer_baseline_parameter_formula():
    """GPTShape.parameters() against the GPTModel build_gpt makes (tiny, on the CPU)."""
    import torch
    from benchmarks.gpt_baseline import build_gpt, mqa_matched_to

    from griffin_megatron.presets import get_preset
    from griffin_megatron.runtime import ensure_initialized

    ensure_initialized()
    shape = mqa_matched_to(get_preset("griffin-tiny"))
    model = build_gpt(shape, 64, torch.float32, "cpu")
    assert sum(p.numel() for p in model.parameters()) == shape.parameters()
