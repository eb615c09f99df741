"""The import graph of the project's packages, read from the source with ``ast`` (nothing imported).

The folders are the floors of docs/ARCHITECTURE.md: the science core ``er_core`` (floor 0); the
middle floor ``trainers``, ``search_spaces``, ``reports`` (floor 1, side by side: none imports
another); the service ``er_tune`` (floor 2). Every import statement counts, the lazy ones inside
functions included: a cycle through a lazy import is still a cycle for the reader, and a lazy
``import ray`` still makes Ray reachable. Checked: no cycle; no import from a floor into a higher
floor or into a sibling package of the same floor; the service is the only package that imports
Ray; ``er_core`` imports without Ray in ``sys.modules``; benchmarks import nothing from the tests.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"er_core": 0, "trainers": 1, "search_spaces": 1, "reports": 1, "er_tune": 2}
PACKAGES = tuple(FLOORS)
# What must never reach Ray through imports: everything below the service.
RAY_FREE = ("er_core", "trainers", "search_spaces", "reports")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules ``name`` imports (project modules by full name, others by their top-level name)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {target if target in known else target.split(".")[0] for target in found}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif target in graph and state.get(target) == 1:
                return path[path.index(target):] + [target]
            elif target in graph and not state.get(target):
                state[target] = 1
                path.append(target)
                stack.append(iter(sorted(graph[target])))
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Everything ``start`` imports, directly or not, with the module that imports it first.

    Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``: parents count here."""
    seen = {start: ""}
    todo = [start]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        targets = set(graph.get(module, ())) | {".".join(parts[:i]) for i in range(1, len(parts))}
        for target in sorted(targets):
            if target not in seen:
                seen[target] = module
                todo.append(target)
    return seen


def chain(seen: dict[str, str], target: str) -> str:
    links = [target]
    while seen[links[-1]]:
        links.append(seen[links[-1]])
    return " <- ".join(links)


def test_the_graph_is_read_from_every_package(graph):
    assert {"er_core.rules", "er_tune.cli", "search_spaces.parse", "reports.status", "trainers.trial"} <= set(graph)
    assert "search_spaces.parse" in graph["search_spaces.plan"]
    assert "ray" in graph["er_tune.progress"]
    assert "er_core.rules" in graph["reports.discover"]  # relative and absolute imports both resolved
    assert "reports.results_io" in graph["reports.discover"]


def test_find_cycle_finds_a_lazy_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"os"}}) is None


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def floor_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run up a floor or sideways into another package of the same floor."""
    found = []
    for name, targets in sorted(graph.items()):
        package = name.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other in FLOORS and other != package and FLOORS[other] >= FLOORS[package]:
                found.append(f"{name} -> {target}")
    return found


def test_floor_violations_are_found():
    assert floor_violations({"er_core.rules": {"reports.status"}, "trainers.trial": {"search_spaces.plan"},
                             "er_tune.cli": {"reports.status", "er_core.rules"}}) == [
        "er_core.rules -> reports.status", "trainers.trial -> search_spaces.plan"]


def test_no_import_runs_up_a_floor_or_sideways(graph):
    assert floor_violations(graph) == []


@pytest.mark.parametrize("root", RAY_FREE)
def test_ray_is_unreachable_below_the_service(graph, root):
    starts = [name for name in graph if name == root or name.startswith(root + ".")]
    assert starts, root
    for start in starts:
        seen = reachable(graph, start)
        assert "ray" not in seen, f"{start} reaches Ray: {chain(seen, 'ray')}"


def test_the_science_core_imports_without_ray_or_the_floors_above():
    """Imported for real in a fresh interpreter: the ER objectives need neither Ray nor Optuna."""
    code = ("import sys, er_core, er_core.objectives, er_core.models, er_core.data, er_core.collapse, "
            "er_core.estimators, er_core.rules, er_core.outcome, er_core.power, er_core.config\n"
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'ray', 'optuna', 'er_tune', 'trainers', 'search_spaces', 'reports'})\n"
            "print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_benchmarks_import_nothing_from_the_tests():
    known = set(project_modules())
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        targets = imports_of(f"benchmarks.{path.stem}", path, known)
        assert not [t for t in targets if t == "tests" or t.startswith("tests.")], path.name
