"""Run with torchrun on a GPU: three iterations of Bridge's own pretrain() on a tiny Griffin,
configured by our recipe function from a YAML written by the test (Bridge's mock data, a null
tokenizer). Prints "BRIDGE PRETRAIN DONE" when pretrain() returned."""

from __future__ import annotations

import sys


def main(recipe_path: str, output_dir: str) -> None:
    from tests.bridge.te_stand_in import import_bridge

    import_bridge()
    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    from griffin_megatron.interop.megatron_bridge.recipes import pretrain_config

    config = pretrain_config(recipe_path, output_dir=output_dir)
    pretrain(config, forward_step)
    print("BRIDGE PRETRAIN DONE")


if __name__ == "__main__":
    main(*sys.argv[1:3])
