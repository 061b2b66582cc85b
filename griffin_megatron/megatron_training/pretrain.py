"""The pieces `megatron.training.pretrain()` asks of a model script, for Hawk and Griffin, in the
shape of Megatron-LM's `pretrain_gpt.py`:

    arguments        Megatron-LM's parser + add_griffin_arguments (extra_args_provider)
    model            GriffinModelConfig / GriffinModelBuilder (model_builder.py)
    data             Megatron-Core's GPTDataset (or MockGPTDataset with --mock-data) through
                     BlendedMegatronDatasetBuilder, built on every rank
    forward step     griffin_megatron.parallel.forward_step (the masked token loss of GPT)

Logging, checkpointing (`--save`, `--load`, `--ckpt-format torch_dist`), the optimizer, the
schedules and fault tolerance are Megatron-LM's, unchanged.

Every rank builds the datasets and reads its own micro-batches (Megatron-LM broadcasts a batch
from TP rank 0 to the first and last pipeline stages only), because every pipeline stage of
Griffin needs `position_ids` to find document boundaries. Position ids always restart after an
end-of-document token: that is where the recurrence, the convolution and the attention window
are reset.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import List, Optional

MIN_MEGATRON_CORE = "0.19"


def megatron_training_missing() -> Optional[str]:
    """None when this megatron-core ships Megatron-LM's training loop with the ModelBuilder API,
    else the sentence to tell the user."""
    from megatron.core.package_info import __version__

    try:
        import megatron.training.models.base  # noqa: F401
    except ImportError:
        return (
            f"megatron-core {__version__} does not ship Megatron-LM's training loop with the "
            f"ModelConfig/ModelBuilder API (megatron.training.models, megatron-core >= "
            f"{MIN_MEGATRON_CORE}); install megatron-core>={MIN_MEGATRON_CORE} on Python >= 3.12, "
            "or train with `griffin-megatron train`."
        )
    return None


def parse_arguments(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Megatron-LM's `parse_and_validate_args`, with Griffin's preset filled in, Griffin's shape
    rules checked and what Megatron-LM's parser leaves unsettled settled (settle.py), between
    parsing and Megatron's own checks."""
    from megatron.training.arguments import parse_args, validate_args
    from megatron.training.global_vars import set_global_variables

    from .arguments import add_griffin_arguments, apply_preset, check_griffin_arguments
    from .settle import settle_arguments

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = parse_args(extra_args_provider=add_griffin_arguments)
    apply_preset(args)
    check_griffin_arguments(args)
    settle_arguments(args, sys.argv[1:])
    validate_args(args, {})
    set_global_variables(args)
    return args


def rejected_arguments(error: AssertionError) -> str:
    """One sentence for a failed Megatron-LM argument check (bare asserts, often without a
    message: then the assertion's own source line says what was checked)."""
    message = str(error).strip()
    if not message:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        message = f"`{frame.line}` failed ({Path(frame.filename).name}:{frame.lineno})"
    return f"Megatron-LM rejected the arguments: {message}"


def is_dataset_built_on_rank(vp_stage=None) -> bool:
    return True  # every rank reads its own batches (see the module docstring)


def dataset_config(args: argparse.Namespace):
    """The GPTDatasetConfig of Megatron-LM's data options, built as `train` builds its own."""
    from megatron.training import get_tokenizer
    from megatron.training.utils import get_blend_and_blend_per_split

    from ..run_config import gpt_dataset_config

    blend, blend_per_split = get_blend_and_blend_per_split(args)
    return gpt_dataset_config(
        blend, args.seq_length, args.split, args.seed, args.data_cache_path, get_tokenizer(),
        eod_mask_loss=args.eod_mask_loss, blend_per_split=blend_per_split,
        num_dataset_builder_threads=args.num_dataset_builder_threads,
        mmap_bin_files=args.mmap_bin_files,
    )


def train_valid_test_datasets_provider(train_val_test_num_samples, vp_stage=None):
    """Megatron-LM's dataset provider: GPTDataset (MockGPTDataset with --mock-data)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, MockGPTDataset
    from megatron.training import get_args, print_rank_0

    args = get_args()
    dataset_type = MockGPTDataset if args.mock_data else GPTDataset
    print_rank_0("> building train, validation, and test datasets for Griffin ...")
    return BlendedMegatronDatasetBuilder(
        dataset_type, train_val_test_num_samples, is_dataset_built_on_rank, dataset_config(args)
    ).build()


# Megatron-LM: the provider builds datasets on each rank itself (no broadcast from rank 0).
train_valid_test_datasets_provider.is_distributed = True


def run(argv: Optional[List[str]] = None) -> int:
    """Parse Megatron-LM's + Griffin's options and train with `megatron.training.pretrain()`."""
    missing = megatron_training_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    from ..device import check_cuda_usable
    from ..errors import UserError

    try:
        check_cuda_usable()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from megatron.core.enums import ModelType
    from megatron.training import get_tokenizer
    from megatron.training.argument_utils import pretrain_cfg_container_from_args
    from megatron.training.training import pretrain

    from .. import compat
    from ..parallel.forward_step import forward_step
    from ..compat import megatron_training_cpu as cpu_bridges
    from ..compat import megatron_training_fixes as upstream_fixes
    from .arguments import model_config_from_args

    compat.install()
    with cpu_bridges.installed(), upstream_fixes.installed(), compat.distributed_optimizer_fixes():
        try:
            args = parse_arguments(argv)
            model_config = model_config_from_args(args, get_tokenizer().vocab_size)
        except UserError as error:
            # Ours (errors.py: GriffinConfig's rules, refused options, missing extensions).
            print(f"error: {error}", file=sys.stderr)
            return 2
        except ValueError as error:
            # TransformerConfig's ValueErrors (also one sentence).
            print(f"error: {error}", file=sys.stderr)
            return 1
        except AssertionError as error:
            print(f"error: {rejected_arguments(error)}", file=sys.stderr)
            return 1
        config = pretrain_cfg_container_from_args(args, model_config)
        pretrain(config, train_valid_test_datasets_provider, ModelType.encoder_or_decoder,
                 forward_step)
    return 0
