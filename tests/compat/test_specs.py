"""Layer-spec forms by release (griffin_megatron.compat.specs)."""

import logging

import pytest

from griffin_megatron import compat
from griffin_megatron.compat import specs
from griffin_megatron.compat.versions import megatron_core_in

from tests.fixtures.tiny_models import build_tiny_model

LAYER_LOGGER = "megatron.core.transformer.transformer_layer"


@pytest.mark.skipif(not megatron_core_in((0, 16), (0, 18)),
                    reason="only 0.16-0.17's TransformerLayer prints the warning")
def test_the_uninformative_mlp_warning_is_real_and_dropped(caplog, megatron_single_process):
    compat.install()  # as the entry points do
    layer_logger = logging.getLogger(LAYER_LOGGER)
    ours = [f for f in layer_logger.filters if isinstance(f, specs._DropUnknownMlpWarning)]
    assert ours, "compat.install() did not add the filter"
    for f in ours:
        layer_logger.removeFilter(f)
    try:
        with caplog.at_level(logging.WARNING, logger=LAYER_LOGGER):
            build_tiny_model("R")
        assert any(r.getMessage().startswith(specs._UNKNOWN_MLP_WARNING) for r in caplog.records)
    finally:
        for f in ours:
            layer_logger.addFilter(f)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LAYER_LOGGER):
        build_tiny_model("R")
    assert not any("Unknown MLP type" in r.getMessage() for r in caplog.records)


def test_the_filter_applies_only_to_the_releases_that_warn():
    assert specs.quiet_unknown_mlp_warning() is megatron_core_in((0, 16), (0, 18))
