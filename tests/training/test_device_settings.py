"""What the machine's CUDA means for a run (griffin_megatron/device.py): visible NVIDIA devices
that torch cannot use stop every run with one sentence; gradient-accumulation fusion is on only
where NVIDIA Apex's extension imports, and asking for it where it does not is one sentence.

The machine is stood in for by parameters (visible devices, CUDA) and by a fake extension in
sys.modules; the command-line tests use this CUDA-less machine as it is, with
CUDA_VISIBLE_DEVICES=0 making devices "visible"."""

from __future__ import annotations

import logging
import subprocess
import sys
import types

import pytest
import torch

from griffin_megatron import device, options
from griffin_megatron.cli.main import RUNS_A_MODEL, main
from griffin_megatron.errors import DeviceError, MissingDependencyError
from griffin_megatron.run_config import build_model_config

from .harness import environment

NO_DEVICE = dict(environ={}, device_files=[])


@pytest.mark.parametrize("environ, files, visible", [
    pytest.param({}, [], None, id="nothing"),
    pytest.param({}, ["/dev/nvidiactl", "/dev/nvidia-uvm"], None, id="driver-files-only"),
    pytest.param({}, ["/dev/nvidia1", "/dev/nvidia0"], "/dev/nvidia0, /dev/nvidia1", id="dev"),
    pytest.param({"CUDA_VISIBLE_DEVICES": "0,1"}, [], "CUDA_VISIBLE_DEVICES=0,1", id="indices"),
    pytest.param({"CUDA_VISIBLE_DEVICES": "GPU-8a1b"}, [], "CUDA_VISIBLE_DEVICES=GPU-8a1b",
                 id="uuid"),
    pytest.param({"CUDA_VISIBLE_DEVICES": ""}, ["/dev/nvidia0"], None, id="hidden-empty"),
    pytest.param({"CUDA_VISIBLE_DEVICES": "-1"}, ["/dev/nvidia0"], None, id="hidden-minus-one"),
    pytest.param({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, [], None, id="slurm-no-devices"),
])
def test_visible_nvidia_devices(environ, files, visible):
    assert device.visible_nvidia_devices(environ, files) == visible


@pytest.mark.parametrize("environ, files", [
    pytest.param({"CUDA_VISIBLE_DEVICES": "0"}, [], id="CUDA_VISIBLE_DEVICES"),
    pytest.param({}, ["/dev/nvidia0"], id="dev-nvidia0"),
])
def test_visible_but_unusable_cuda_is_refused(environ, files):
    with pytest.raises(DeviceError) as error:
        device.check_cuda_usable(environ, files, cuda_available=False)
    message = str(error.value)
    assert message.endswith('CUDA_VISIBLE_DEVICES="".')
    assert f"torch {torch.__version__}" in message
    assert ("torch.version.cuda is None" if torch.version.cuda is None
            else f"CUDA {torch.version.cuda}") in message


def test_usable_or_hidden_devices_pass():
    device.check_cuda_usable({"CUDA_VISIBLE_DEVICES": "0"}, [], cuda_available=True)
    device.check_cuda_usable({"CUDA_VISIBLE_DEVICES": ""}, ["/dev/nvidia0"], cuda_available=False)
    device.check_cuda_usable(**NO_DEVICE, cuda_available=False)


def test_this_machine_as_ci_runs_it_passes():
    """CI and the test suite run on CPU machines with CUDA_VISIBLE_DEVICES unset: unaffected."""
    device.check_cuda_usable()


@pytest.fixture
def fusion_extension(monkeypatch):
    """Make Apex's extension importable (True) or not (False); the log flag starts afresh."""
    monkeypatch.setattr(device, "_fusion_off_said", False)

    def make(importable: bool):
        fake = types.ModuleType(device.FUSION_EXTENSION) if importable else None
        monkeypatch.setitem(__import__("sys").modules, device.FUSION_EXTENSION, fake)

    return make


@pytest.mark.parametrize("requested, cuda, importable, expected", [
    (None, True, True, True),
    (None, True, False, False),
    (None, False, True, False),
    (None, False, False, False),
    (True, True, True, True),
    (False, True, True, False),
])
def test_fusion_rule(fusion_extension, requested, cuda, importable, expected):
    fusion_extension(importable)
    assert device.gradient_accumulation_fusion(requested, cuda) is expected


def test_fusion_off_on_a_gpu_is_said_once(fusion_extension, caplog):
    fusion_extension(False)
    with caplog.at_level(logging.WARNING, logger=device.__name__):
        for _ in range(3):
            assert device.gradient_accumulation_fusion(None, cuda=True) is False
    said = [r.getMessage() for r in caplog.records if r.name == device.__name__]
    assert len(said) == 1 and device.FUSION_EXTENSION in said[0], said


@pytest.mark.parametrize("cuda", [True, False])
def test_fusion_asked_for_where_it_cannot_run_is_one_sentence(fusion_extension, cuda):
    fusion_extension(False)
    with pytest.raises(MissingDependencyError) as error:
        device.gradient_accumulation_fusion(True, cuda)
    message = str(error.value)
    assert device.FUSION_EXTENSION in message and "not the PyPI package 'apex'" in message
    assert message.endswith("leave the fusion to auto or off.")


@pytest.mark.parametrize("importable", [True, False])
def test_train_config_takes_the_rule(fusion_extension, monkeypatch, importable):
    """`train`'s GriffinConfig, on a (pretended) GPU, with and without the extension."""
    fusion_extension(importable)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = build_model_config(options.options_namespace({"preset": "griffin-tiny"}))
    assert config.gradient_accumulation_fusion is importable
    assert config.use_cpu_initialization is False and config.deallocate_pipeline_outputs is True


def test_train_config_on_a_cpu(fusion_extension):
    fusion_extension(True)  # even where it imports: the kernel is CUDA's
    if torch.cuda.is_available():
        pytest.skip("the CPU settings of a CPU-only machine")
    config = build_model_config(options.options_namespace({"preset": "griffin-tiny"}))
    assert config.gradient_accumulation_fusion is False
    assert config.use_cpu_initialization is True and config.deallocate_pipeline_outputs is False


def _error_lines(stderr: str):
    return [line for line in stderr.splitlines() if "error:" in line or "Traceback" in line]


# Arguments each command parses (what they name need not exist: the check comes first).
COMMAND_LINES = {
    "train": ["train", "--data-path", "corpus", "--train-iters", "1"],
    "generate": ["generate", "--load", "ckpt", "--prompt", "def"],
    "evaluate": ["evaluate", "--load", "ckpt", "--text-files", "book.txt", "--seq-length", "64"],
    "lm-eval": ["lm-eval", "--load", "ckpt", "--tasks", "piqa"],
}


@pytest.mark.parametrize("command", RUNS_A_MODEL)
def test_every_command_that_runs_a_model_checks_first(command, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(COMMAND_LINES[command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"griffin-megatron {command}: error: NVIDIA "
                                               "devices are visible (CUDA_VISIBLE_DEVICES=0)")
    assert not any(tmp_path.iterdir())


def test_unusable_visible_devices_stop_generate(tiny_checkpoint, tmp_path):
    """From the outside, on this machine as it is (no usable CUDA): CUDA_VISIBLE_DEVICES=0 shows
    it a device and the command stops; with CUDA_VISIBLE_DEVICES="" (the CPU on purpose) the
    same command runs."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine whose torch cannot use CUDA")
    run = [sys.executable, "-m", "griffin_megatron", "generate", "--load", str(tiny_checkpoint),
           "--prompt", "def", "--max-new-tokens", "2"]
    refused = subprocess.run(run, cwd=tmp_path, env=environment(CUDA_VISIBLE_DEVICES="0"),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    errors = _error_lines(refused.stderr)
    assert len(errors) == 1, refused.stderr
    assert "NVIDIA devices are visible (CUDA_VISIBLE_DEVICES=0)" in errors[0]
    assert errors[0].endswith('run on the CPU on purpose with CUDA_VISIBLE_DEVICES="".')
    assert refused.stdout == ""
    on_purpose = subprocess.run(run, cwd=tmp_path, env=environment(CUDA_VISIBLE_DEVICES=""),
                                capture_output=True, text=True, timeout=300)
    assert on_purpose.returncode == 0, on_purpose.stderr[-3000:]
    assert on_purpose.stdout.strip(), on_purpose.stderr[-3000:]


def test_train_refuses_fusion_it_cannot_run(fusion_extension, capsys, tmp_path, monkeypatch):
    fusion_extension(False)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data-path", "corpus", "--train-iters", "1",
                 "--gradient-accumulation-fusion", "on"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and device.FUSION_EXTENSION in err[0], err
    assert not any(tmp_path.iterdir())
