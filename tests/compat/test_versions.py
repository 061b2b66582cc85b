"""Release parsing and ranges (griffin_megatron.compat.versions)."""

import pytest

from griffin_megatron.compat import versions


@pytest.mark.parametrize(
    "text, parsed",
    [("0.16.1", (0, 16, 1)), ("0.19.2", (0, 19, 2)), ("0.20.0rc1", (0, 20, 0)), ("0.18", (0, 18, 0))],
)
def test_release_numbers_are_read(text, parsed):
    assert versions._parse(text) == parsed


def test_a_version_without_numbers_is_refused():
    with pytest.raises(ValueError, match="cannot read a release number"):
        versions._parse("main")


@pytest.mark.parametrize(
    "release, inside",
    [((0, 15, 9), False), ((0, 16, 0), True), ((0, 19, 2), True), ((0, 20, 0), False)],
)
def test_ranges_are_half_open(monkeypatch, release, inside):
    monkeypatch.setattr(versions, "megatron_core_version", lambda: release)
    assert versions.megatron_core_in((0, 16), (0, 20)) is inside


def test_the_installed_release_is_supported():
    assert versions.megatron_core_in(*versions.SUPPORTED), versions.megatron_core_version()
