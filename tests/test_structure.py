"""The package's shape: no import cycle, layers that only look down.

The imports are read from the source (every ``import`` statement, including those inside
functions and under ``TYPE_CHECKING``: a cycle hidden in a function is still a cycle), so the
test sees what a reader of the code sees, not only what one run happens to execute.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tacoreservice"
ROOT = PACKAGE.name

# The layers that hold the domain (data, analysis, decisions, orders and what they stand on):
# they are used by the service layer (tacoreservice.service: method handlers, params, the
# registry) and must never use it back.
DOMAIN = (
    "analysis",
    "backtest",
    "cache",
    "config",
    "fields",
    "market_data",
    "protocol",
    "risk",
    "security",
    "storage",
    "trading",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterable[str]:
    """The package's modules that ``module`` imports, each resolved to the module file that the
    import loads (``from pkg import name`` is ``pkg.name`` when that is a module)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
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
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _explain(graph: dict[str, set[str]], cycle: list[str]) -> str:
    members = set(cycle)
    return "; ".join(f"{a} -> {b}" for a in cycle for b in sorted(graph.get(a, ())) if b in members)


def _top(module: str) -> str:
    """The first level under the package: a subpackage or a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_walker_reads_the_imports_it_should() -> None:
    # Guards the test itself: a walker that found nothing would pass everything.
    assert len(MODULES) > 100
    assert "tacoreservice.config" in GRAPH["tacoreservice.security.secrets"]
    assert "tacoreservice.protocol.errors" in GRAPH["tacoreservice.protocol.messages"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(_explain(GRAPH, c) for c in cycles)


def test_no_two_parts_of_the_package_import_each_other() -> None:
    # One level up: tacoreservice.analysis and tacoreservice.backtest may not lean on each
    # other even through modules that do not form a cycle themselves.
    parts: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        if module == ROOT:
            continue
        for target in targets:
            if target != ROOT and _top(target) != _top(module):
                parts.setdefault(_top(module), set()).add(_top(target))
    cycles = _cycles(parts)
    details = [
        f"{a} -> {b}: "
        + ", ".join(
            sorted(
                f"{m} -> {t}"
                for m, ts in GRAPH.items()
                for t in ts
                if m != ROOT and _top(m) == a and t != ROOT and _top(t) == b
            )
        )
        for cycle in cycles
        for a in cycle
        for b in sorted(parts.get(a, ()))
        if b in cycle
    ]
    assert not cycles, "\n".join(details)


@pytest.mark.parametrize("layer", DOMAIN)
def test_the_domain_does_not_import_the_service_layer(layer: str) -> None:
    leaning = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _top(module) == layer
        for target in targets
        if _top(target) == "service"
    )
    assert not leaning
