"""The generation tests run on one intra-op thread (tests/fixtures/tiny_models.py says why);
their tiny models are the `griffin` and `hawk` fixtures of tests/fixtures/plugin.py."""

from tests.fixtures.tiny_models import one_thread  # noqa: F401  (autouse in this package)
