"""The Bridge tests run only where Megatron Bridge is installed (the Python 3.12 CI leg, with
the `bridge` extra); elsewhere they skip with the reason. Bridge is imported only inside the
spawned workers (tests/bridge/bridge_worker.py), never into the pytest process: its import
registers many HF Auto classes that the other tests should not see."""

from __future__ import annotations

import pytest

from tests.bridge.te_stand_in import bridge_installed


def pytest_collection_modifyitems(config, items):
    if bridge_installed():
        return
    skip = pytest.mark.skip(
        reason="Megatron Bridge is not installed (pip install --no-deps megatron-bridge==0.6.2 "
        "and the `bridge` extra; Python >= 3.12)"
    )
    for item in items:
        path = str(item.fspath).replace("\\", "/")
        # The import-error test checks exactly the machines without Bridge.
        if "tests/bridge/" in path and not path.endswith("test_bridge_import_errors.py"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    import sys

    module = sys.modules.get("tests.bridge.test_bridge_conversion")  # None when not collected
    MEASURED = getattr(module, "MEASURED", None)
    if not MEASURED:
        return
    terminalreporter.section("Megatron Bridge round trips (HF -> Megatron -> HF)")
    for (arch, tp, what), value in sorted(MEASURED.items()):
        terminalreporter.write_line(f"{arch:8s} tp{tp}  {what}: {value:.3g}")
