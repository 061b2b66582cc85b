"""Imports inside griffin_megatron run downward: the modules' imports form no cycle, not even
through imports inside functions (which only hide a cycle until the function runs), and the
lower layers (checkpoint/, parallel/, data/, modules/, ops/) never import the entry
layers (training/, megatron_training/, cli/), not even inside a function.

Read from the source with `ast`, so nothing is imported (no import side effects, and no
dependency has to be installed for the check).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "griffin_megatron"
LOWER = ("checkpoint", "parallel", "data", "modules", "ops")
UPPER = ("training", "megatron_training", "cli")


def module_names(root: Path) -> Dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package at `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module) -> Iterator[Tuple[ast.stmt, bool]]:
    """(import statement, runs at import time): a statement inside a function body runs only
    when the function is called; one under `if TYPE_CHECKING:` never runs."""

    def walk(nodes, at_import_time):
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, at_import_time
            elif isinstance(node, ast.If) and _is_type_checking(node):
                continue
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(ast.iter_child_nodes(node), False)
            else:
                yield from walk(ast.iter_child_nodes(node), at_import_time)

    yield from walk(tree.body, True)


def _targets(node: ast.stmt, importer: str, is_package: bool, known: Set[str]) -> List[str]:
    """The package modules an import statement loads (the named module, each submodule it names
    and the packages above them), outside the importer's own ancestors (already loading)."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        if node.level:
            base = importer.split(".")
            base = base if is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        named = [module] + [f"{module}.{alias.name}" for alias in node.names]
    loaded = set()
    for name in named:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            loaded.add(".".join(parts[:end]))
    ancestors = {".".join(importer.split(".")[:end]) for end in range(1, importer.count(".") + 1)}
    return sorted((loaded & known) - ancestors - {importer})


def import_graph(root: Path, at_import_time_only: bool) -> Dict[str, Dict[str, int]]:
    """importer -> {imported package module: line of the first such import}."""
    names = module_names(root)
    graph: Dict[str, Dict[str, int]] = {}
    for importer, path in names.items():
        edges = graph.setdefault(importer, {})
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, at_import_time in _import_nodes(tree):
            if at_import_time_only and not at_import_time:
                continue
            is_package = path.name == "__init__.py"
            for target in _targets(node, importer, is_package, set(names)):
                edges.setdefault(target, node.lineno)
    return graph


def find_cycle(graph: Dict[str, Dict[str, int]]) -> Optional[List[str]]:
    """One import cycle [a, b, ..., a], or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: finished
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for target in graph.get(node, {}):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _shown(cycle: List[str], graph: Dict[str, Dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + (
        f" -> {cycle[-1]}")


def test_module_level_imports_form_no_cycle():
    graph = import_graph(PACKAGE_ROOT, at_import_time_only=True)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {_shown(cycle, graph)}"


def test_imports_inside_functions_close_no_cycle_either():
    graph = import_graph(PACKAGE_ROOT, at_import_time_only=False)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle through function-level imports: {_shown(cycle, graph)}"


def test_lower_layers_never_import_the_entry_layers():
    graph = import_graph(PACKAGE_ROOT, at_import_time_only=False)
    upward = [
        f"{importer} imports {target} (line {line})"
        for importer, edges in graph.items()
        if importer.split(".")[1:2] and importer.split(".")[1] in LOWER
        for target, line in edges.items()
        if target.split(".")[1:2] and target.split(".")[1] in UPPER
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checks_see_cycles_and_upward_imports(tmp_path):
    """The checks above on a made-up package: they must catch what they are there to catch,
    through relative, absolute, package-level and function-level imports."""
    package = tmp_path / "pkg"
    for folder in ("modules", "training"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "modules" / "a.py").write_text(
        "from . import b\n\ndef later():\n    from ..training.loop import run\n")
    (package / "modules" / "b.py").write_text("import pkg.modules.c\n")
    (package / "modules" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import later\n"
        "from .a import later\n")
    (package / "training" / "loop.py").write_text("from .. import modules\n")

    graph = import_graph(package, at_import_time_only=True)
    assert find_cycle(graph) == ["pkg.modules.a", "pkg.modules.b", "pkg.modules.c",
                                 "pkg.modules.a"]
    assert "pkg.training.loop" not in graph["pkg.modules.a"]
    everything = import_graph(package, at_import_time_only=False)
    assert everything["pkg.modules.a"]["pkg.training.loop"] == 4
    assert everything["pkg.modules.a"]["pkg.training"] == 4
    assert everything["pkg.training.loop"] == {"pkg.modules": 1}

    (package / "modules" / "c.py").write_text("")
    assert find_cycle(import_graph(package, at_import_time_only=True)) is None

    # A cycle closed by an import inside a function: invisible at import time only.
    (package / "modules" / "d.py").write_text("def later():\n    from .e import x\n")
    (package / "modules" / "e.py").write_text("from .d import later\nx = 1\n")
    assert find_cycle(import_graph(package, at_import_time_only=True)) is None
    assert find_cycle(import_graph(package, at_import_time_only=False)) == [
        "pkg.modules.d", "pkg.modules.e", "pkg.modules.d"]
