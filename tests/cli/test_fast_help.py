"""`griffin-megatron --help` and every subcommand's `--help` build their parsers without importing
Megatron-Core or torch (importing them took 4-5 s of the command's 4.4-5.5 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from griffin_megatron.cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from griffin_megatron.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    assert done.code == 0, done.code
heavy = sorted({name.split('.')[0] for name in sys.modules} & {'megatron', 'torch', 'transformers'})
print('imported:', ','.join(heavy) or 'none')
"""


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in COMMANDS],
                         ids=lambda argv: " ".join(argv))
def test_help_imports_no_megatron_or_torch(argv):
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage: griffin-megatron" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "imported: none"
