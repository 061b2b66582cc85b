"""How the tests import each other. Every folder of tests/ that holds Python is a package, so a
test, its folder's helpers and the shared builders of tests/fixtures are imported as
`tests.<folder>.<module>` however pytest or a worker subprocess was started (from the
repository root, or with it on PYTHONPATH), and same-named files in two folders never clash.
No file adds folders to the import path to borrow from another folder."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
# An assignment to, or an insert/append/extend on, the interpreter's module search path.
PATH_EDIT = re.compile(r"\bsys\.path\s*(\.\s*(insert|append|extend)\b|\[[^\]]*\]\s*=|\+?=[^=])")


def _python_files() -> list:
    return sorted(TESTS.rglob("*.py"))


def test_every_folder_holding_python_is_a_package():
    folders = {path.parent for path in _python_files()}
    missing = sorted(str(d.relative_to(ROOT)) for d in folders if not (d / "__init__.py").is_file())
    assert missing == [], f"add an __init__.py to: {', '.join(missing)}"


def test_no_test_file_edits_the_import_path():
    this_file = Path(__file__).resolve()  # its examples below are edits, on purpose
    edits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _python_files() if path != this_file
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if PATH_EDIT.search(line)
    ]
    assert edits == [], "import from tests.<folder>.<module> instead:\n" + "\n".join(edits)


def test_the_path_edit_pattern_finds_what_it_must():
    """The check above is only as good as its pattern: it must find each form of edit, and not
    reading or comparing."""
    edits = ["sys.path.insert(0, here)", "sys.path.append(x)", "sys.path.extend([x])",
             "sys.path = [x]", "sys.path += [x]", "sys.path[:0] = [x]"]
    reads = ["print(sys.path)", "x in sys.path", "sys.path == old", "list(sys.path)"]
    assert [bool(PATH_EDIT.search(line)) for line in edits] == [True] * len(edits)
    assert [bool(PATH_EDIT.search(line)) for line in reads] == [False] * len(reads)
