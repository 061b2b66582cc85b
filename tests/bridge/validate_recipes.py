"""Run as a script: builds every Bridge recipe function's ConfigContainer and validates it with
WORLD_SIZE set to the GPU count of the cluster its YAML states, then builds one YAML recipe with a
key Bridge has no counterpart for, and checks GriffinModelProvider's two Bridge conventions
(deferred validation, deep copies sharing process groups); prints one JSON object
(tests/bridge/test_bridge_recipes.py). One process, so Bridge is imported once for all of it."""

from __future__ import annotations

import json
import os
import sys


def main(extra_recipe: str) -> dict:
    from tests.bridge.te_stand_in import import_bridge

    import_bridge()
    from griffin_megatron.errors import ConfigError
    from griffin_megatron.interop.megatron_bridge import recipes
    from griffin_megatron.recipes import recipe_names, stated_cluster

    results = {}
    for name in recipe_names():
        os.environ["WORLD_SIZE"] = str(stated_cluster(name).gpus)
        config = recipes.RECIPES[recipes.function_name(name)]()
        config.validate()
        model = config.model
        results[name] = dict(
            provider=type(model).__name__, num_layers=model.num_layers,
            hidden_size=model.hidden_size, block_pattern=model.block_pattern,
            tp=model.tensor_model_parallel_size, pp=model.pipeline_model_parallel_size,
            sp=model.sequence_parallel, seq_length=config.dataset.seq_length,
            model_seq_length=model.seq_length, gbs=config.train.global_batch_size,
            mbs=config.train.micro_batch_size, iters=config.train.train_iters,
            lr=config.optimizer.lr, min_lr=config.optimizer.min_lr, bf16=model.bf16,
            warmup=config.scheduler.lr_warmup_iters,
            data_parallel_size=config.get_data_parallel_size(stated_cluster(name).gpus),
        )
    try:
        recipes.pretrain_config(extra_recipe)
        refusal = None
    except ConfigError as error:
        refusal = str(error)
    return dict(recipes=results, refusal=refusal, provider=provider_conventions())


def provider_conventions() -> dict:
    import copy

    from griffin_megatron.errors import ConfigError
    from griffin_megatron.interop.megatron_bridge import GriffinModelProvider
    from griffin_megatron.presets import preset_architecture

    broken = GriffinModelProvider(**{**preset_architecture("griffin-tiny"), "block_pattern": "RX"})
    try:
        broken.finalize()
        finalize_error = None
    except ConfigError as error:
        finalize_error = str(error)
    provider = GriffinModelProvider(**preset_architecture("griffin-tiny"))
    provider._pg_collection = object()  # stands for live process groups
    clone = copy.deepcopy(provider)
    clone.num_layers += 1
    return dict(
        constructed_unchecked=broken.block_pattern == "RX",
        finalize_error=finalize_error,
        groups_shared=clone._pg_collection is provider._pg_collection,
        fields_copied=clone.num_layers == provider.num_layers + 1,
    )


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1])))
