"""Training recipes: YAML files whose keys are `griffin-megatron train`'s option names.

A recipe is the argument list of one training run written as a file: each key is a long option of
`griffin-megatron train` without its leading dashes (Megatron-LM's names, hyphenated), e.g.

    preset: griffin-14b
    tensor-model-parallel-size: 4
    sequence-parallel: true

`griffin-megatron train --config NAME_OR_FILE.yaml` reads one, and options given on the command
line win. The accepted keys, their types and defaults are the rows of `griffin_megatron.options`
(`RECIPE_KEYS` here); `load_recipe` validates a file against them. The recipes shipped with the
project are the YAML files of this package (`griffin_megatron/recipes/<name>.yaml`, installed with
it and read through `importlib.resources`), found by name; anything else is loaded by path.

A recipe may state the cluster it was laid out for in a comment line

    # cluster: 8 nodes x 8 H100-80GB

which `griffin-megatron plan` uses when --gpus / --gpu-memory-gb are not given.
"""

from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import yaml

from ..errors import ConfigError, InputFileError
from ..options import BY_NAME, OPTIONS, Option

SUFFIX = ".yaml"


class RecipeError(ConfigError):
    """A recipe that cannot be used; the message is one sentence naming the file and key."""


# key -> its option row (type, default, help, choices, minimum).
RECIPE_KEYS: Dict[str, Option] = BY_NAME

# Recipe keys that change the model's architecture -> GriffinConfig field.
ARCHITECTURE_KEYS: Dict[str, str] = {option.name: option.field for option in OPTIONS if option.field}

# What YAML may hold for each kind of option (a float option also takes `3`, a list option a
# space-separated string).
_YAML_TYPES = {int: (int,), float: (int, float), bool: (bool,), str: (str,), list: (str, list)}


def _type_name(types: Tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list"}
    if types == _YAML_TYPES[float]:
        return "a number"
    return " or ".join(names[t] for t in types)


def _check_value(source: str, key: str, value: Any) -> None:
    option = RECIPE_KEYS[key]
    types = _YAML_TYPES[option.kind]
    # YAML booleans are ints to Python: an int key must not accept `true`.
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if option.kind is list and isinstance(value, list):
        ok = all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value)
    if not ok:
        raise RecipeError(
            f"{source}: '{key}' must be {_type_name(types)} ({option.help}), got {value!r}."
        )
    if option.choices is not None and value not in option.choices:
        raise RecipeError(
            f"{source}: '{key}' is {value!r}; choose one of {', '.join(option.choices)}."
        )
    if option.minimum is not None and option.kind in (int, float) and value < option.minimum:
        bound = "must not be negative" if option.minimum == 0 else f"must be at least {option.minimum}"
        raise RecipeError(f"{source}: '{key}' {bound}, got {value!r}.")


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
                "names without the leading dashes (see griffin_megatron.options)."
            )
        _check_value(source, key, value)
    return recipe


def shipped_recipes() -> Dict[str, "resources.abc.Traversable"]:
    """name -> file of every recipe installed with the package."""
    folder = resources.files(__name__)
    return {entry.name[: -len(SUFFIX)]: entry for entry in folder.iterdir()
            if entry.name.endswith(SUFFIX) and entry.is_file()}


def recipe_names() -> list:
    return sorted(shipped_recipes())


def recipe_path(name_or_path: Union[str, Path]):
    """A path as given, or the shipped recipe of that name (a file of this package)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        return name_or_path  # already a shipped recipe's file
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix not in (".yaml", ".yml") and path.parent == Path("."):
        shipped = shipped_recipes().get(path.name)
        if shipped is not None:
            return shipped
    raise InputFileError(
        f"no recipe {str(name_or_path)!r}: give a YAML file path or one of the shipped names "
        f"({', '.join(recipe_names())})."
    )


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
