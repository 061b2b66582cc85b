"""Training recipes: YAML files whose keys are `griffin-megatron train`'s option names.

A recipe is the argument list of one training run written as a file: each key is a long option of
`griffin-megatron train` without its leading dashes (Megatron-LM's names, hyphenated), e.g.

    preset: griffin-14b
    tensor-model-parallel-size: 4
    sequence-parallel: true

`griffin-megatron train --config FILE.yaml` reads one, and options given on the command line win.
`RECIPE_KEYS` below is the one list of accepted keys and their types; `load_recipe` validates a
file against it. Recipes shipped with the project live in `recipes/<name>.yaml` at the root of the
checkout (an editable install finds them by name); anything else is loaded by path.

A recipe may state the cluster it was laid out for in a comment line

    # cluster: 8 nodes x 8 H100-80GB

which `griffin-megatron plan` uses when --gpus / --gpu-memory-gb are not given.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import yaml

from .errors import InputFileError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one sentence naming the file and key."""


@dataclass(frozen=True)
class RecipeKey:
    types: Tuple[type, ...]
    help: str
    choices: Optional[Tuple[str, ...]] = None


_INT, _FLOAT, _BOOL, _STR = (int,), (int, float), (bool,), (str,)

# key -> accepted YAML types and meaning. Megatron-LM's names and meanings unless marked "ours".
RECIPE_KEYS: Dict[str, RecipeKey] = {
    # model (ours)
    "preset": RecipeKey(_STR, "model preset name (griffin-megatron info --list)"),
    "block-pattern": RecipeKey(_STR, "temporal block per layer, repeated: R recurrent, A attention"),
    "lru-width": RecipeKey(_INT, "RG-LRU width (default: the preset's)"),
    "attention-window": RecipeKey(_INT, "local attention window W (keys per query, itself included)"),
    "backend": RecipeKey(_STR, "layer implementation", ("local", "te")),
    "seq-length": RecipeKey(_INT, "training sequence length in tokens"),
    "rglru-num-heads": RecipeKey(_INT, "block-diagonal blocks of the RG-LRU gates"),
    # model size (Megatron-LM's names), overriding the preset's
    "make-vocab-size-divisible-by": RecipeKey(_INT, "pad the embedding table to a multiple of this"),
    "num-layers": RecipeKey(_INT, "number of residual blocks"),
    "hidden-size": RecipeKey(_INT, "model width"),
    "ffn-hidden-size": RecipeKey(_INT, "MLP width of each GeGLU branch"),
    "num-attention-heads": RecipeKey(_INT, "query heads of the local attention"),
    "kv-channels": RecipeKey(_INT, "attention head dimension"),
    # parallelism
    "tensor-model-parallel-size": RecipeKey(_INT, "tensor-parallel size (TP)"),
    "pipeline-model-parallel-size": RecipeKey(_INT, "pipeline-parallel size (PP)"),
    "num-layers-per-virtual-pipeline-stage": RecipeKey(
        _INT, "layers per virtual pipeline stage (interleaved 1F1B); unset: not interleaved"
    ),
    "decoder-first-pipeline-num-layers": RecipeKey(_INT, "layers of the first pipeline stage (uneven stages)"),
    "decoder-last-pipeline-num-layers": RecipeKey(_INT, "layers of the last pipeline stage (uneven stages)"),
    "sequence-parallel": RecipeKey(_BOOL, "split norms and activations over the sequence (needs TP > 1)"),
    "use-distributed-optimizer": RecipeKey(_BOOL, "shard optimizer state over data-parallel ranks"),
    # batch and schedule
    "micro-batch-size": RecipeKey(_INT, "sequences per micro-batch and data-parallel rank"),
    "global-batch-size": RecipeKey(_INT, "sequences per optimizer step, all ranks together"),
    "train-iters": RecipeKey(_INT, "optimizer steps"),
    "lr": RecipeKey(_FLOAT, "peak learning rate"),
    "min-lr": RecipeKey(_FLOAT, "learning rate at the end of the decay"),
    "lr-warmup-iters": RecipeKey(_INT, "linear warmup steps"),
    "lr-decay-iters": RecipeKey(_INT, "steps of the decay (default: train-iters)"),
    "lr-decay-style": RecipeKey(
        _STR, "decay after warmup", ("constant", "linear", "cosine", "inverse-square-root", "WSD")
    ),
    "weight-decay": RecipeKey(_FLOAT, "AdamW weight decay"),
    "clip-grad": RecipeKey(_FLOAT, "gradient-norm clipping threshold"),
    "adam-beta1": RecipeKey(_FLOAT, "Adam first-moment decay"),
    "adam-beta2": RecipeKey(_FLOAT, "Adam second-moment decay"),
    "adam-eps": RecipeKey(_FLOAT, "Adam epsilon"),
    "bf16": RecipeKey(_BOOL, "bf16 mixed precision (fp32 main weights and gradients)"),
    "seed": RecipeKey(_INT, "random seed"),
    # activation recompute
    "recompute-granularity": RecipeKey(_STR, "activation recompute", ("full", "selective")),
    "recompute-method": RecipeKey(_STR, "which layers full recompute covers", ("uniform", "block")),
    "recompute-num-layers": RecipeKey(
        _INT, "uniform: layers per recomputed group; block: recomputed layers per pipeline stage"
    ),
    # data
    "data-path": RecipeKey((str, list), "Megatron indexed dataset prefix(es), optionally weighted"),
    "split": RecipeKey(_STR, "train,valid,test proportions, e.g. 969,30,1"),
    "tokenizer": RecipeKey(_STR, "tokenizer file or directory (default: the one preprocess recorded)"),
    "eod-mask-loss": RecipeKey(_BOOL, "no loss on predictions made at end-of-document tokens"),
    "data-cache-path": RecipeKey(_STR, "where dataset index caches go"),
    "num-workers": RecipeKey(_INT, "data-loader worker processes"),
    # checkpoints, evaluation and logs
    "save": RecipeKey(_STR, "checkpoint directory to write"),
    "load": RecipeKey(_STR, "checkpoint directory to resume from"),
    "finetune": RecipeKey(_BOOL, "take only the weights of load; start the run afresh"),
    "no-save": RecipeKey(_BOOL, "write no checkpoint (ours)"),
    "save-interval": RecipeKey(_INT, "steps between checkpoints"),
    "eval-interval": RecipeKey(_INT, "steps between validation runs"),
    "eval-iters": RecipeKey(_INT, "validation steps per run"),
    "log-interval": RecipeKey(_INT, "steps between log lines"),
    "tensorboard-dir": RecipeKey(_STR, "TensorBoard event directory"),
    "wandb-project": RecipeKey(_STR, "Weights & Biases project to log to"),
    "wandb-exp-name": RecipeKey(_STR, "Weights & Biases run name"),
}

# Recipe keys that change the model's architecture -> GriffinConfig field.
ARCHITECTURE_KEYS = {
    "num-layers": "num_layers",
    "hidden-size": "hidden_size",
    "ffn-hidden-size": "ffn_hidden_size",
    "num-attention-heads": "num_attention_heads",
    "kv-channels": "kv_channels",
    "rglru-num-heads": "rglru_num_heads",
    "block-pattern": "block_pattern",
    "lru-width": "lru_width",
    "attention-window": "attention_window",
    "seq-length": "seq_length",
}


def _type_name(types: Tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list"}
    if types == _FLOAT:
        return "a number"
    return " or ".join(names[t] for t in types)


def _check_value(source: str, key: str, value: Any) -> None:
    spec = RECIPE_KEYS[key]
    # YAML booleans are ints to Python: an int key must not accept `true`.
    ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
    if key == "data-path" and isinstance(value, list):
        ok = all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value)
    if not ok:
        raise RecipeError(
            f"{source}: '{key}' must be {_type_name(spec.types)} ({spec.help}), got {value!r}."
        )
    if spec.choices is not None and value not in spec.choices:
        raise RecipeError(
            f"{source}: '{key}' is {value!r}; choose one of {', '.join(spec.choices)}."
        )
    if spec.types in (_INT, _FLOAT) and value < 0:
        raise RecipeError(f"{source}: '{key}' must not be negative, got {value!r}.")


def validate_recipe(recipe: Dict[str, Any], source: str = "recipe") -> Dict[str, Any]:
    """Check every key against RECIPE_KEYS; returns the recipe unchanged."""
    if not isinstance(recipe, dict):
        raise RecipeError(f"{source} must be a YAML mapping of option names to values.")
    for key, value in recipe.items():
        if key not in RECIPE_KEYS:
            hyphenated = str(key).replace("_", "-")
            close = difflib.get_close_matches(hyphenated, RECIPE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RecipeError(
                f"{source}: unknown key '{key}'{hint}; keys are `griffin-megatron train` option "
                "names without the leading dashes (see griffin_megatron.recipes.RECIPE_KEYS)."
            )
        _check_value(source, key, value)
    return recipe


def recipe_path(name_or_path: Union[str, Path]) -> Path:
    """A path as given, or `recipes/<name>.yaml` of the checkout for a bare recipe name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix not in (".yaml", ".yml") and path.parent == Path("."):
        candidate = RECIPES_DIR / f"{path.name}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(recipe_names()) or "none found"
    raise InputFileError(
        f"no recipe {str(name_or_path)!r}: give a YAML file path or one of the shipped names "
        f"({known})."
    )


def recipe_names() -> list:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")) if RECIPES_DIR.is_dir() else []


def load_recipe(name_or_path: Union[str, Path]) -> Dict[str, Any]:
    """The validated key -> value dict of a recipe name or YAML path."""
    path = recipe_path(name_or_path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path} is not valid YAML: {error}.") from error
    return validate_recipe(recipe if recipe is not None else {}, str(path))


class Cluster(NamedTuple):
    nodes: int
    gpus_per_node: int
    gpu: str
    memory_gb: float

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def __str__(self) -> str:
        return f"{self.nodes} node{'s' if self.nodes > 1 else ''} x {self.gpus_per_node} {self.gpu}"


_CLUSTER = re.compile(
    r"^#\s*cluster:\s*(\d+)\s+nodes?\s*x\s*(\d+)\s+(\S*?)-?(\d+(?:\.\d+)?)GB\s*$", re.MULTILINE
)


def stated_cluster(name_or_path: Union[str, Path]) -> Optional[Cluster]:
    """The `# cluster: N nodes x G NAME-MGB` comment of a recipe, or None when it has none."""
    match = _CLUSTER.search(recipe_path(name_or_path).read_text())
    if match is None:
        return None
    nodes, per_node, gpu, memory = match.groups()
    return Cluster(int(nodes), int(per_node), f"{gpu}-{memory}GB", float(memory))


def architecture_overrides(recipe: Dict[str, Any]) -> Dict[str, Any]:
    """GriffinConfig fields a recipe sets on top of its preset."""
    return {field: recipe[key] for key, field in ARCHITECTURE_KEYS.items() if key in recipe}
