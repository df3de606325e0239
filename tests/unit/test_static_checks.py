"""The static checks `make test` runs: the import rules, no import cycle, ruff, mypy.

Each runs the real tool on the repository, as a developer runs it by hand:

    .venv/bin/lint-imports                    # .importlinter: layers, pure builders, acyclic siblings
    .venv/bin/ruff check . && .venv/bin/ruff format --check .
    .venv/bin/mypy                            # [tool.mypy] in pyproject.toml
    .venv/bin/python -m tests.unit.test_static_checks   # the import graph's cycles (none), as text
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROOT_PACKAGES = ("components", "tritonllm")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of modules that import each other around a circle (Tarjan's strongly connected
    components over the module-level import graph; a package counts as its `__init__`)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in edges:
                    continue
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges[node]:
                        cycles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def _graph() -> grimp.ImportGraph:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return grimp.build_graph(*ROOT_PACKAGES, cache_dir=None)


def test_import_contracts_hold():
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_module_import_graph_has_no_cycle():
    cycles = import_cycles(_graph())
    assert not cycles, "modules that import each other around a circle:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a graph with a circle of three modules and a self-import."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e"):
        graph.add_module(module)
    for importer, imported in (
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.c"),
        ("pkg.c", "pkg.a"),
        ("pkg.d", "pkg.a"),
        ("pkg.e", "pkg.e"),
    ):
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.e"]]


def test_ruff_finds_nothing():
    result = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is():
    result = _run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_finds_nothing():
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


if __name__ == "__main__":
    found = import_cycles(_graph())
    print("\n".join(" <-> ".join(c) for c in found) or "no import cycle in " + ", ".join(ROOT_PACKAGES))
    sys.exit(1 if found else 0)
