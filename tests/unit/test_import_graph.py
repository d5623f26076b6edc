"""No import cycles anywhere: the operator (joulie_tasks) and its test bed (joulie_testbed).

grimp reads every import statement, including function-local and ``TYPE_CHECKING`` ones,
so a cycle cannot hide behind either. The layer contracts themselves are import-linter's
(``lint-imports``, pyproject.toml).
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("joulie_tasks", "joulie_testbed")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES)


def test_there_is_no_import_cycle(graph: grimp.ImportGraph) -> None:
    assert import_cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    # Given a graph a → b → c → a, d → a
    g = grimp.ImportGraph()
    for importer, imported in (("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")):
        g.add_import(importer=importer, imported=imported)
    # Then one cycle, of three modules
    assert import_cycles(g) == [["a", "b", "c"]]
