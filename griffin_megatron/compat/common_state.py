"""Checkpoints across Megatron-Core releases: where a checkpoint's common (non-sharded) state is.

megatron-core 0.16 (measured: 0.16.1) keeps it in `common.pt` and reads only that. 0.19
(measured: 0.19.2) writes it as one object, `common_state`, inside the torch_dist files, and
reads both forms. On a 0.19 checkpoint, 0.16's loader fails in its own error path
(`AttributeError: 'str' object has no attribute 'iterdir'`, strategies/common.py), for model
weights and Megatron-LM's run arguments alike.

On releases that read only `common.pt`, `load_common_state` and `load_kwargs` read the object
form with torch's own checkpoint reader. What cannot be unpickled here (Megatron-LM's run
arguments name classes that the older release lacks) is refused in one sentence that names
both releases and the way across: convert on the newer release.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

from ..errors import CheckpointError
from .versions import megatron_core_version

COMMON_FILE = "common.pt"
# ShardedObject("common_state", None, (1,), (0,)).unique_key, as megatron-core 0.19 writes it.
COMMON_OBJECT = "common_state/shard_0_1"
READS_BOTH_FORMS = (0, 19)


def _needs_our_reader(directory: Union[str, Path]) -> bool:
    return (megatron_core_version() < READS_BOTH_FORMS
            and not (Path(directory) / COMMON_FILE).exists())


def _installed() -> str:
    return ".".join(map(str, megatron_core_version()))


def read_common_object(directory: Union[str, Path]) -> dict:
    """The common state stored inside a checkpoint's torch_dist files (the 0.19 form)."""
    import torch
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint import load as load_torch_checkpoint
    from torch.distributed.checkpoint.api import CheckpointException

    holder = {COMMON_OBJECT: io.BytesIO()}
    try:
        with warnings.catch_warnings():  # "assuming ... a single process": so it is
            warnings.simplefilter("ignore", UserWarning)
            load_torch_checkpoint(holder, storage_reader=FileSystemReader(str(directory)),
                                  no_dist=True)
        loaded = holder[COMMON_OBJECT]
        if isinstance(loaded, io.BytesIO):
            loaded.seek(0)
            loaded = torch.load(loaded, weights_only=True)
    except (CheckpointException, AttributeError, ModuleNotFoundError, RuntimeError,
            KeyError) as error:
        # torch's reader reports the unpickling error of a class the newer release pickled
        # (e.g. an enum added since) inside a CheckpointException: its last line names it.
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = (lines[-1].strip() if lines else type(error).__name__).split(" on <module")[0]
        raise CheckpointError(
            f"checkpoint {directory} was written by a newer megatron-core (0.19 keeps a "
            "checkpoint's common state inside its torch_dist files) and megatron-core "
            f"{_installed()} cannot read that state ({reason}); convert "
            "it where it was written, `griffin-megatron convert mcore-to-hf --ckpt ... --out "
            "DIR` under megatron-core >= 0.19, then `convert hf-to-mcore --hf-dir DIR` here."
        ) from None
    return loaded[0]


def load_common_state(directory: Union[str, Path]) -> dict:
    """dist_checkpointing.load_common_state_dict, for a checkpoint of either form."""
    if _needs_our_reader(directory):
        return read_common_object(directory)
    from megatron.core import dist_checkpointing

    return dist_checkpointing.load_common_state_dict(str(directory))


def load_kwargs(directory: Union[str, Path]) -> dict:
    """Extra keyword arguments for dist_checkpointing.load so that it reads a checkpoint of
    either form (none where the release reads both, or the checkpoint has `common.pt`)."""
    if not _needs_our_reader(directory):
        return {}
    from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy

    class CommonObjectLoadStrategy(TorchCommonLoadStrategy):
        def load_common(self, checkpoint_dir):
            return read_common_object(checkpoint_dir)

    return {"common_strategy": CommonObjectLoadStrategy()}
