"""What the machine's CUDA offers a run, settled once at its start, for both training loops.

- `check_cuda_usable()`: NVIDIA devices this process is shown but torch cannot use stop the run
  with one sentence. Without it such a machine (e.g. a torch wheel built for a newer driver)
  trains on the CPU over gloo with no error, because every CUDA-or-CPU choice in Megatron and
  here reads `torch.cuda.is_available()`. Running on the CPU on purpose: CUDA_VISIBLE_DEVICES="".
- `run_settings()`: the ModelParallelConfig fields that depend on CUDA, for `griffin-megatron
  train` and Megatron-LM's `pretrain()` (both through run_config.py), so the two loops cannot
  drift apart.
- `gradient_accumulation_fusion()`: the fused weight-gradient GEMM only where NVIDIA Apex's
  `fused_weight_gradient_mlp_cuda` extension imports. Megatron-LM turns it on by default, and
  Megatron-Core's `ColumnParallelLinear` raises at construction where the extension is missing
  (every model has one: GPTModel's output layer), so a GPU without Apex could not train at all.
"""

from __future__ import annotations

import glob
import importlib
import logging
import os
import re
from typing import Iterable, Mapping, Optional

import torch

from .errors import DeviceError, MissingDependencyError

logger = logging.getLogger(__name__)

CPU_ON_PURPOSE = 'CUDA_VISIBLE_DEVICES=""'
FUSION_EXTENSION = "fused_weight_gradient_mlp_cuda"
_DEVICE_FILE = re.compile(r"nvidia\d+")
_fusion_off_said = False


def _names_a_device(entry: str) -> bool:
    # CUDA reads CUDA_VISIBLE_DEVICES up to its first invalid entry: an index or a GPU/MIG UUID.
    return entry.isdigit() or entry.startswith(("GPU-", "MIG-"))


def visible_nvidia_devices(environ: Mapping[str, str],
                           device_files: Iterable[str]) -> Optional[str]:
    """Where this process is shown NVIDIA devices (CUDA_VISIBLE_DEVICES, else /dev/nvidiaN
    files), in words, or None. CUDA_VISIBLE_DEVICES="" (or "-1") hides every device."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        first = value.split(",")[0].strip()
        return f"CUDA_VISIBLE_DEVICES={value}" if _names_a_device(first) else None
    files = sorted(f for f in device_files if _DEVICE_FILE.fullmatch(os.path.basename(f)))
    return ", ".join(files) if files else None


def check_cuda_usable(environ: Optional[Mapping[str, str]] = None,
                      device_files: Optional[Iterable[str]] = None,
                      cuda_available: Optional[bool] = None) -> None:
    """DeviceError when NVIDIA devices are visible but torch cannot use CUDA. Called once at the
    start of every command that runs a model; the arguments stand in for the machine in tests."""
    environ = os.environ if environ is None else environ
    device_files = glob.glob("/dev/nvidia*") if device_files is None else device_files
    visible = visible_nvidia_devices(environ, device_files)
    if visible is None:
        return
    if torch.cuda.is_available() if cuda_available is None else cuda_available:
        return
    build = ("a CPU build, torch.version.cuda is None" if torch.version.cuda is None else
             f"built for CUDA {torch.version.cuda}, which this machine's driver may not support")
    raise DeviceError(
        f"NVIDIA devices are visible ({visible}) but torch {torch.__version__} ({build}) cannot "
        f"use them; install a torch build that matches the driver (nvidia-smi shows its CUDA "
        f"version), or run on the CPU on purpose with {CPU_ON_PURPOSE}."
    )


def fusion_extension_imports() -> bool:
    try:
        importlib.import_module(FUSION_EXTENSION)
    except ImportError:
        return False
    return True


def gradient_accumulation_fusion(requested: Optional[bool], cuda: bool) -> bool:
    """Whether weight gradients are accumulated by Apex's fused GEMM. requested: None wherever
    it can run (Megatron-LM's default, said once when it cannot), True required (refused in one
    sentence where it cannot run), False off."""
    global _fusion_off_said
    if requested is False:
        return False
    possible = cuda and fusion_extension_imports()
    if possible:
        return True
    if requested:
        where = "NVIDIA Apex's" if cuda else "a CUDA GPU and NVIDIA Apex's"
        raise MissingDependencyError(
            f"gradient accumulation fusion needs {where} {FUSION_EXTENSION} extension, which "
            f"does not import here; build NVIDIA Apex from source with --cpp_ext --cuda_ext (not "
            f"the PyPI package 'apex'), or leave the fusion to auto or off."
        )
    if cuda and not _fusion_off_said and os.environ.get("RANK", "0") == "0":
        # On a CPU the fused kernel means nothing; on a GPU the user may expect it. Rank 0 only.
        _fusion_off_said = True
        logger.warning(
            "gradient accumulation fusion is off: NVIDIA Apex's %s does not import, so weight "
            "gradients are accumulated by a separate add (same result, a little slower).",
            FUSION_EXTENSION,
        )
    return False


def run_settings(fusion: Optional[bool] = None, cpu_initialization: bool = False) -> dict:
    """The ModelParallelConfig fields that depend on CUDA, for both training loops."""
    cuda = torch.cuda.is_available()
    return dict(
        # Without CUDA, weights are initialised on the CPU.
        use_cpu_initialization=cpu_initialization or not cuda,
        # Megatron-LM frees a stage's sent activations right after the send; gloo sends are
        # asynchronous and would read the freed storage (measured: wrong, run-to-run varying
        # losses with interleaved stages), so only on GPUs, where NCCL streams order it.
        deallocate_pipeline_outputs=cuda,
        gradient_accumulation_fusion=gradient_accumulation_fusion(fusion, cuda),
    )
