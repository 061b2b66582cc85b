"""The launch scripts: valid bash, and the torchrun command they build (with stand-in
torchrun / srun / scontrol programs that record their arguments instead of launching)."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = ROOT / "examples" / "launch_torchrun.sh"
SLURM = ROOT / "examples" / "launch_slurm.sbatch"


@pytest.mark.parametrize("script", [TORCHRUN, SLURM], ids=lambda p: p.name)
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "torchrun.args"
    _stub(bin_dir, "torchrun", f'printf "%s\\n" "$@" > "{record}"\n')
    # srun: drop its own options, run the command once here (as node SLURM_NODEID).
    _stub(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    _stub(bin_dir, "scontrol", 'printf "node007\\nnode008\\n"\n')
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "RECIPE": "griffin-14b",
        "DATA_PATH": "0.7 /data/a_text_document 0.3 /data/b_text_document",
        "RUN_DIR": str(tmp_path / "run"),
    }
    return env, record


def _expected_tail(run_dir):
    return [
        "-m", "griffin_megatron", "train",
        "--config", "griffin-14b",
        "--data-path", "0.7", "/data/a_text_document", "0.3", "/data/b_text_document",
        "--save", f"{run_dir}/checkpoints", "--load", f"{run_dir}/checkpoints",
        "--tensorboard-dir", f"{run_dir}/tensorboard",
        "--lr", "2e-4",
    ]


def test_torchrun_launcher_builds_the_multi_node_command(stubs):
    env, record = stubs
    env.update(NNODES="8", NODE_RANK="3", MASTER_ADDR="node007")
    subprocess.run(["bash", str(TORCHRUN), "--lr", "2e-4"], env=env, check=True)
    args = record.read_text().splitlines()
    assert args[:10] == ["--nnodes", "8", "--node-rank", "3", "--nproc-per-node", "8",
                         "--master-addr", "node007", "--master-port", "29500"]
    assert args[10:] == _expected_tail(env["RUN_DIR"])


def test_slurm_launcher_runs_torchrun_per_node(stubs):
    env, record = stubs
    env.update(SLURM_JOB_NODELIST="node[007-008]", SLURM_NNODES="2", SLURM_NODEID="1",
               SLURM_SUBMIT_DIR=str(ROOT))
    subprocess.run(["bash", str(SLURM), "--lr", "2e-4"], env=env, check=True)
    args = record.read_text().splitlines()
    assert args[:10] == ["--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "8",
                         "--master-addr", "node007", "--master-port", "29500"]
    assert args[10:] == _expected_tail(env["RUN_DIR"])


@pytest.mark.parametrize("script", [TORCHRUN, SLURM], ids=lambda p: p.name)
def test_launchers_require_a_recipe_and_data(stubs, script):
    env, record = stubs
    del env["DATA_PATH"]
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DATA_PATH" in result.stderr
    assert not record.exists()
