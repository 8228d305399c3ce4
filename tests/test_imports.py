"""The package's import graph has no circle, and no module outgrows the house size.

Only module-level imports count (an import inside a function runs when called, after every module is
loaded). ``from package import name`` counts as an import of ``package.name`` when that is a module,
else of ``package``; importing a module also imports every package above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "prunekit").rglob("*.py")) + sorted((ROOT / "hydra_plugins").rglob("*.py"))
MAX_LINES = 250


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SOURCES}


def imported(module: str, tree: ast.Module) -> set[str]:
    """The prunekit modules that ``module`` imports at its top level."""
    found = set()
    for node in tree.body:  # top level only, and inside `if TYPE_CHECKING:` nothing runs
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {name for name in found if name in MODULES and name != module}


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        graph.add_node(module)
        for target in imported(module, ast.parse(path.read_text())):
            graph.add_edge(module, target)
            parts = target.split(".")
            for depth in range(1, len(parts)):  # a module's packages run first
                parent = ".".join(parts[:depth])
                if parent in MODULES and parent != module and not module.startswith(parent + "."):
                    graph.add_edge(module, parent)
    return graph


def test_no_module_imports_itself_in_a_circle():
    circles = [sorted(group) for group in nx.strongly_connected_components(import_graph()) if len(group) > 1]
    assert not circles, f"import circles: {circles}"


def test_the_graph_sees_a_circle_when_there_is_one():
    graph = import_graph()
    graph.add_edge("prunekit.config", "prunekit.pipeline")  # pipeline depends on config: this closes a loop
    assert any(len(group) > 1 for group in nx.strongly_connected_components(graph))


def test_no_module_is_over_the_house_size():
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    assert not {m: n for m, n in sizes.items() if n > MAX_LINES}
