"""The import graph of the whole house: the operator (joulie_tasks), its test bed
(joulie_testbed), the benchmarks (bench) and the tests.

- No import cycle anywhere. grimp reads every import statement, including
  function-local and ``TYPE_CHECKING`` ones, so a cycle cannot hide behind either.
- No test module (``test_*.py``, ``conftest.py``) is imported by another module: what
  tests share lives in the test bed (importable library code), in a conftest fixture,
  or in a plain support module of tests/ (builders, fakes, helpers).
- bench/ depends on the operator and the test bed only, never on tests/.

The layer contracts of the operator itself are import-linter's (``lint-imports``,
pyproject.toml).
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("joulie_tasks", "joulie_testbed", "bench", "tests")


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


def is_test_module(module: str) -> bool:
    """A module pytest collects or loads as a conftest (tests/…/test_x.py, conftest.py)."""
    last = module.rpartition(".")[2]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def imports_of_test_modules(graph: grimp.ImportGraph) -> list[str]:
    """Every "importer → test module" edge."""
    return sorted(
        f"{importer} → {module}"
        for module in graph.modules
        if is_test_module(module)
        for importer in graph.find_modules_that_directly_import(module)
    )


def outside_imports(graph: grimp.ImportGraph, package: str, allowed: tuple[str, ...]) -> list[str]:
    """Every import from ``package`` into a first-party package not in ``allowed``."""
    first_party = {p for p in PACKAGES if p not in allowed}
    return sorted(
        f"{module} → {imported}"
        for module in graph.modules
        if module == package or module.startswith(package + ".")
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.partition(".")[0] in first_party
    )


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES)


def test_the_graph_holds_every_package(graph: grimp.ImportGraph) -> None:
    roots = {m.partition(".")[0] for m in graph.modules}
    assert roots == set(PACKAGES)
    assert "tests.unit.test_import_graph" in graph.modules
    assert "joulie_testbed.emulator.watch" in graph.modules


def test_there_is_no_import_cycle(graph: grimp.ImportGraph) -> None:
    assert import_cycles(graph) == []


def test_no_test_module_is_imported(graph: grimp.ImportGraph) -> None:
    assert imports_of_test_modules(graph) == []


def test_bench_depends_on_the_operator_and_the_test_bed_only(graph: grimp.ImportGraph) -> None:
    assert outside_imports(graph, "bench", ("joulie_tasks", "joulie_testbed", "bench")) == []


def test_the_test_bed_and_the_operator_never_import_tests_or_bench(
    graph: grimp.ImportGraph,
) -> None:
    assert outside_imports(graph, "joulie_testbed", ("joulie_tasks", "joulie_testbed")) == []
    assert outside_imports(graph, "joulie_tasks", ("joulie_tasks",)) == []


def _graph(*edges: tuple[str, str]) -> grimp.ImportGraph:
    g = grimp.ImportGraph()
    for importer, imported in edges:
        g.add_import(importer=importer, imported=imported)
    return g


def test_the_cycle_finder_sees_a_cycle() -> None:
    # Given a graph a → b → c → a, d → a
    g = _graph(("a", "b"), ("b", "c"), ("c", "a"), ("d", "a"))
    # Then one cycle, of three modules
    assert import_cycles(g) == [["a", "b", "c"]]


def test_the_checks_see_a_test_module_imported_and_bench_importing_tests() -> None:
    # Given a test importing another test's module and a conftest, and bench importing
    # a test helper
    g = _graph(
        ("tests.chaos.test_a", "tests.integration.test_b"),
        ("tests.chaos.test_a", "tests.chaos.conftest"),
        ("tests.chaos.test_a", "tests.fakes"),
        ("bench.run", "tests.fakes"),
        ("bench.run", "joulie_testbed.procs"),
    )
    # Then both test-module imports are named, the helper import is not; and bench's
    # import of tests/ is named, its import of the test bed is not
    assert imports_of_test_modules(g) == [
        "tests.chaos.test_a → tests.chaos.conftest",
        "tests.chaos.test_a → tests.integration.test_b",
    ]
    assert outside_imports(g, "bench", ("joulie_tasks", "joulie_testbed", "bench")) == [
        "bench.run → tests.fakes"
    ]
