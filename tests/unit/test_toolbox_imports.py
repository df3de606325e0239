"""The import graph of tritonllm/ (issue 16): no cycles, and the KServe and OpenAI halves of the
client and bench share a protocol-neutral core instead of importing each other.

The graph is read from the source with `ast`, every import statement counted wherever it stands
(imports inside functions too, as import-linter's grimp counts them), so the test needs nothing
beyond the standard library. The same rules, as import-linter contracts, are in the report of
issue 16 for the project's `.importlinter`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "tritonllm"

COMMANDS = {"tritonllm.client", "tritonllm.bench", "tritonllm.serve"}
KSERVE_SIDE = {"tritonllm.kserve_client", "tritonllm.kserve_bench"}
OPENAI_SIDE = {"tritonllm.openai_client", "tritonllm.openai_bench", "tritonllm.openai_frontend"}
CORE = {"tritonllm.client_core", "tritonllm.bench_core", "tritonllm.ports", "tritonllm._llm_io"}


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """module -> the tritonllm modules it imports (directly)."""
    modules = {f"tritonllm.{p.stem}" if p.stem != "__init__" else "tritonllm": p for p in package_dir.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != "tritonllm" and t != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """module -> one import chain from `start` to it."""
    chains, frontier = {start: [start]}, [start]
    while frontier:
        current = frontier.pop()
        for target in sorted(graph.get(current, ())):
            if target not in chains:
                chains[target] = chains[current] + [target]
                frontier.append(target)
    return chains


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            back = reachable(graph, target).get(module)
            if back:
                found.append([module, *back])
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "tritonllm.openai_frontend" in graph["tritonllm.serve"]  # imported inside serve's main()
    assert "tritonllm.auth_front" in graph["tritonllm.serve"]


def test_a_cycle_would_be_found(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from tritonllm import b\n")
    (tmp_path / "b.py").write_text("from tritonllm.a import f\n")
    assert cycles(import_graph(tmp_path)) == [
        ["tritonllm.a", "tritonllm.b", "tritonllm.a"],
        ["tritonllm.b", "tritonllm.a", "tritonllm.b"],
    ]


def test_tritonllm_has_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    "sources, forbidden",
    [
        pytest.param(KSERVE_SIDE, OPENAI_SIDE, id="kserve-imports-no-openai"),
        pytest.param(OPENAI_SIDE, KSERVE_SIDE | COMMANDS, id="openai-imports-no-kserve-nor-commands"),
        pytest.param(CORE, KSERVE_SIDE | OPENAI_SIDE | COMMANDS, id="core-imports-no-half-nor-command"),
    ],
)
def test_the_halves_share_a_core_and_not_each_other(sources, forbidden):
    graph = import_graph()
    assert sources | forbidden <= set(graph), sorted((sources | forbidden) - set(graph))  # the names are real
    offending = [
        " -> ".join(chain)
        for source in sorted(sources)
        for target, chain in sorted(reachable(graph, source).items())
        if target in forbidden
    ]
    assert offending == []
