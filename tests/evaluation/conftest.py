"""Tiny random Hawk / Griffin models (the generation tests' builders and fixtures), on one
intra-op thread."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "generation"))

from tiny_models import griffin, hawk, one_thread  # noqa: E402, F401  (fixtures)
