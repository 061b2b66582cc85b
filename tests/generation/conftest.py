"""Module-scoped tiny models (one process, TP=1), run on one intra-op thread (tiny_models.py)."""

from tiny_models import griffin, hawk, one_thread  # noqa: F401  (fixtures)
