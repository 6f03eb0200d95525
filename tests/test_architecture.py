"""Imports only go down: no module of stylealign imports (directly or through others) a module that imports it.

Walks the source with `ast`, so imports inside functions count too (a deferred
import dodges the cycle at import time but not in the design); imports under
`if TYPE_CHECKING:` are type-only and do not count. A package's `__init__` is
a module of its own; `from pkg import name` imports `pkg.name` when that is a
submodule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stylealign

ROOT = Path(stylealign.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the stylealign modules it imports anywhere outside TYPE_CHECKING blocks."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = {name.removesuffix(".__init__") for name in files}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        module = name.removesuffix(".__init__")
        package = module if name.endswith(".__init__") else module.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            edges |= {t for t in targets if t in modules and t != module}
        graph[module] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_the_graph_sees_deferred_and_submodule_imports() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "stylealign.grading" in graph  # a package's __init__ is a module of its own
    assert "stylealign.gguf" in graph["stylealign.models"]  # imported inside a function only
    assert "stylealign.streams.rft" in graph["stylealign.streams.grape"]  # `from stylealign.streams import rft`
    assert "stylealign.run.context" not in graph["stylealign.metrics.reward"]  # under `if TYPE_CHECKING:` only


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
