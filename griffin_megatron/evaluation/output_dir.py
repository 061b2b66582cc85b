"""`evaluate`'s output directory, which holds the results of exactly one run.

`check_output_dir` runs before the model loads: the directory must be creatable and writable,
and one that already holds results is replaced only with --overwrite (and only if it holds
nothing but evaluate's own files). `write_outputs` writes the JSON and the plot into a staging
sibling and renames it into place, so the directory shows the new run's files or the old run's,
never a mix: a --no-plot run removes an earlier run's plot instead of leaving it beside new
numbers. Files get the modes a plain `open` gives them under the user's umask.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

from ..checkpoint.atomic import atomic_directory
from ..errors import OutputExistsError
from ..output_paths import OutputKind, check_apart_from_inputs, check_creatable_directory

JSON_NAME = "evaluation.json"
PLOT_NAME = "evaluation.png"
# The output_paths rule that every --overwrite follows: replace only what this command writes.
EVALUATION = OutputKind(name="an evaluation's results", files=(JSON_NAME, PLOT_NAME),
                        required=(JSON_NAME, PLOT_NAME))


def check_output_dir(path: Union[str, Path], overwrite: bool,
                     inputs: Sequence[Tuple[str, Optional[Union[str, Path]]]] = ()) -> Path:
    """The --output-dir to fill, or one sentence saying why it cannot be. `inputs`: the
    (option, path) pairs evaluate reads, which the output directory must stay apart from."""
    target = check_creatable_directory(path, "--output-dir")
    check_apart_from_inputs(target, "--output-dir", inputs)
    if not target.is_dir():
        return target
    held = sorted(entry.name for entry in target.iterdir())
    foreign = EVALUATION.foreign_entries(target) if held else []
    if foreign:
        more = f" and {len(foreign) - 1} more entries" if len(foreign) > 1 else ""
        raise OutputExistsError(
            f"--output-dir {path} holds {foreign[0]}{more}, which evaluate did not write, and "
            "evaluate replaces its whole output directory; choose a new or empty directory."
        )
    if held and not overwrite:
        raise OutputExistsError(
            f"--output-dir {path} already holds {' and '.join(held)} from an earlier evaluation; "
            "pass --overwrite to replace them, or choose a new directory."
        )
    return target


def write_outputs(path: Union[str, Path], result: dict, overwrite: bool,
                  plot: Optional[Callable[[Path], None]] = None,
                  inputs: Sequence[Tuple[str, Optional[Union[str, Path]]]] = ()) -> Path:
    """evaluation.json (and evaluation.png, drawn by `plot(path)`) as the new contents of
    `path`. The directory is checked again here: it may have changed during the evaluation."""
    target = check_output_dir(path, overwrite, inputs)
    with atomic_directory(target, replace=True) as staging:
        with open(staging / JSON_NAME, "w") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
        if plot is not None:
            plot(staging / PLOT_NAME)
    return target
