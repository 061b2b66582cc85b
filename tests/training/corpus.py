"""A small deterministic corpus for the training tests: short English-like documents drawn
from a fixed vocabulary (a pattern a tiny model learns within a few dozen steps)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import List

WORDS = ("the cat sat on a mat while dogs ran past the red barn and birds sang over green "
         "fields near old stone walls").split()


def documents(count: int = 200, seed: int = 0) -> List[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        sentences = []
        for _ in range(rng.randint(1, 4)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append(" ".join(sentences))
    return docs


def write_jsonl(path: Path, docs: List[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path
