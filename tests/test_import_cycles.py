"""No import cycle among Switchboard's own modules (tests and benchmarks aside).

Every ``import`` counts, at the top of a module or inside a function: an import placed in a
function only postpones a cycle to the first call, it does not remove the dependency. The one
exception is a ``if TYPE_CHECKING:`` block, which never runs. The graph is built with ``ast``
from the source files, without importing anything, so a cycle is named even where Python
would happen to resolve it.

Dependencies run one way (README, "Architecture"): ``config`` -> channels -> invoke ->
services -> connections, with security, connection and channel types plugged in through the
registries that their apps fill in ``AppConfig.ready()``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "integration", "accounts", "connections", "scheduling")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = {module_name(REPO / "manage.py"): REPO / "manage.py"}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class ImportFinder(ast.NodeVisitor):
    """The modules one file imports, anywhere in it except ``if TYPE_CHECKING:`` blocks."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            if f"{base}.{alias.name}" in self.known:  # ``from pkg import module``
                self._add(f"{base}.{alias.name}")
            else:
                self._add(base)

    def _add(self, name: str) -> None:
        # ``import a.b.c`` depends on a.b.c; names that are not Switchboard's are left out.
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if name:
            self.found.add(name)


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        finder = ImportFinder(module, path.name == "__init__.py", known)
        finder.visit(ast.parse(path.read_text(), str(path)))
        graph[module] = finder.found - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules (a few hundred)
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return sorted(component)


def test_the_finder_sees_imports_in_functions_and_skips_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import integration.errors\n"
        "if TYPE_CHECKING:\n    from accounts import models\n"
        "def f():\n    from connections.base import Connection\n"
        "from . import signals\n"
    )
    finder = ImportFinder("integration.snapshot", False, {
        "integration.errors", "accounts.models", "connections.base", "integration.signals", "accounts"})
    finder.visit(ast.parse(source))
    assert finder.found == {"integration.errors", "connections.base", "integration.signals"}


def test_a_cycle_is_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_switchboard_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the modules were not found"
    found = cycles(graph)
    assert not found, "Import cycles (each: a module, what it imports, ..., back to it):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)
