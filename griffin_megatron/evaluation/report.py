"""The evaluation's results: a summary dict (written as JSON by output_dir.py), a printed table
and a PNG plot of loss by position."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Union

from ..errors import MissingDependencyError
from .buckets import PositionBuckets


def summary(buckets: PositionBuckets, **settings) -> dict:
    """JSON-ready results: overall loss and perplexity, the buckets, and the settings used."""
    loss = buckets.mean_loss
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "tokens": buckets.total_tokens,
        "buckets": buckets.rows(),
        "settings": settings,
    }


def format_table(result: dict) -> str:
    lines = [f"{'positions':>20}  {'tokens':>10}  {'loss':>8}  {'ppl':>10}"]
    for row in result["buckets"]:
        span = f"{row['start']}-{row['end']}"
        if row["loss"] is None:
            lines.append(f"{span:>20}  {row['tokens']:>10}  {'-':>8}  {'-':>10}")
        else:
            lines.append(f"{span:>20}  {row['tokens']:>10}  {row['loss']:>8.4f}  "
                         f"{math.exp(row['loss']):>10.3f}")
    lines.append(f"{'all':>20}  {result['tokens']:>10}  {result['loss']:>8.4f}  "
                 f"{result['perplexity']:>10.3f}")
    return "\n".join(lines)


def import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "the loss-by-position plot needs matplotlib; install it with "
            "pip install 'griffin-megatron[eval]' (or pass --no-plot)."
        ) from None
    return plt


def plot_loss_by_position(curves: Dict[str, dict], path: Union[str, Path],
                          title: Optional[str] = None,
                          training_length: Optional[int] = None) -> Path:
    """One line per named result: mean loss of each non-empty bucket at its geometric centre."""
    plt = import_pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, result in curves.items():
        rows = [r for r in result["buckets"] if r["loss"] is not None]
        centres = [math.sqrt(max(r["start"], 1) * r["end"]) for r in rows]
        axes.plot(centres, [r["loss"] for r in rows], marker="o", label=name)
    if training_length is not None:
        axes.axvline(training_length, color="grey", linestyle="--", label="training length")
    axes.set_xscale("log")
    axes.set_xlabel("position in document (tokens of context)")
    axes.set_ylabel("mean loss (nats / token)")
    if title:
        axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def bucket_table_markdown(curves: Dict[str, dict]) -> str:
    """Markdown table: one row per bucket, one loss column per named result."""
    names = list(curves)
    first = curves[names[0]]["buckets"]
    lines = ["| positions | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for i, row in enumerate(first):
        cells: List[str] = []
        for name in names:
            loss = curves[name]["buckets"][i]["loss"]
            cells.append("-" if loss is None else f"{loss:.3f}")
        lines.append(f"| {row['start']}-{row['end']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
