"""Imports only go down: the layers of stylealign, in order, and no import from a lower layer to a higher one.

Every module belongs to exactly one layer (its longest listed prefix names it); a module may import its own
layer and those below. Within a layer, no cycles either.

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

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("io", "cache", "progress", "steps", "config", "records", "distributed", "registry")),
    ("primitives", ("grading", "engines", "engines.base", "engines.retry", "store", "prompts", "gguf", "gguf_parts",
                    "known_models", "models")),
    ("components", ("engines.hf", "engines.vllm", "engines.openai_api", "engines.served", "engines.ray",
                    "lab", "oracles", "metrics", "datasets")),
    ("runtime", ("run",)),
    ("data and training", ("streams", "training", "evaluation", "contamination", "grade_files", "plan")),
    ("analysis", ("report",)),
    ("stages", ("stages", "usage")),
    ("orchestration", ("pipeline", "rehearsal")),
    ("interfaces", ("cli", "server", "wiring", "")),
]
"""Lowest first. `""` is the package itself (`stylealign/__init__.py`, which fills the registries through
`wiring`); `engines` alone is the registry package, its backends sit a layer up."""


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
    assert "stylealign.lab.student" in graph["stylealign.wiring"]  # imported inside a function only
    assert "stylealign.streams.rft" in graph["stylealign.streams.grape"]  # `from stylealign.streams import rft`
    assert "stylealign.wiring" in graph["stylealign"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest listed prefix of `module` (relative to the package)."""
    relative = module.removeprefix("stylealign").removeprefix(".")
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (relative == prefix or relative.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                best, found = len(prefix), index
    assert found is not None
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {"stylealign.config": {"stylealign.io"}, "stylealign.io": {"stylealign.pipeline"}}
    assert upward_imports(graph) == ["stylealign.io (foundation) imports stylealign.pipeline (orchestration)"]
    assert layer_of("stylealign.engines.hf") > layer_of("stylealign.engines") == layer_of("stylealign.engines.base")
    assert layer_of("stylealign") == len(LAYERS) - 1 and layer_of("stylealign.stages.train") > layer_of("stylealign.run.work")


def test_every_module_is_in_a_listed_layer() -> None:
    unlisted = [m for m in import_graph() if layer_of(m) == len(LAYERS) - 1 and m.count(".") and
                not any(m == f"stylealign.{p}" or m.startswith(f"stylealign.{p}.") for p in LAYERS[-1][1] if p)]
    assert not unlisted, f"modules in no listed layer (add them to LAYERS): {unlisted}"


def test_imports_only_go_down() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_type_checking_imports_do_not_count_and_deferred_ones_do() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nimport b\ndef f():\n    import c\n")
    found = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in _imports(tree)]
    assert found == ["typing", "b", "c"]
