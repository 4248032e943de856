"""The shape of the code: no import cycle between the gateway's packages, and one duration parser."""

from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _room(path: Path) -> str:
    """The package (or top-level module) a file belongs to: gateway/engine/expr.py -> engine."""
    return path.relative_to(GATEWAY).parts[0].removesuffix(".py")


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in GATEWAY.rglob("*.py"):
        source = _room(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                if parts[0] == "gateway" and len(parts) > 1 and parts[1] != source:
                    graph.setdefault(source, set()).add(parts[1])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_packages_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    assert "engine" in graph and "diagnosis" in graph, "the graph was not read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_durations_are_parsed_in_one_place() -> None:
    """No module but engine/durations.py knows duration units; the rest import its parser."""
    unit_table = re.compile(r"""["']ms["']\s*:\s*0?\.001""")
    pattern = re.compile(r"\(ms\|s\|m\|h\|d\)|\(\?:ms\|s\|m\|h\|d\)|\(\\d\+\)h")
    offenders = [str(p.relative_to(GATEWAY.parent)) for p in GATEWAY.rglob("*.py")
                 if p.name != "durations.py" and (unit_table.search(t := p.read_text(encoding="utf-8"))
                                                  or pattern.search(t))]
    assert offenders == []
