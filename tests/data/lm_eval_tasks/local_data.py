"""Loads the local tasks' documents from the JSON files beside this file (no hub)."""

import json
from pathlib import Path

import datasets


def load(data_file: str, **_):
    rows = json.loads((Path(__file__).parent / data_file).read_text())
    return {"test": datasets.Dataset.from_list(rows)}
