"""The package layering holds: read from the source (AST), nothing of evaluator is imported.

Layers, lowest first (a package imports only its own layer or lower ones, and peers of one layer
never import each other both ways):

    core < queue < ingest, sampling, pii < rubrics, judges < worker, store
         < monitoring, humans, regression < cli, commands, api

so a reader can follow the data flow from the package names, and a change to a lower package
never needs a higher one. Function-level imports count too: they hide a dependency, they do not
remove it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "evaluator"

LAYERS: dict[str, int] = {
    "core": 0,
    "queue": 1,
    "ingest": 2, "sampling": 2, "pii": 2,
    "rubrics": 3, "judges": 3,
    "worker": 4, "store": 4,
    "monitoring": 5, "humans": 5, "regression": 5,
    "cli": 6, "commands": 6, "api": 6, "__main__": 6,
}
"""Top-level packages (and the two entry modules) by layer."""


@dataclass(frozen=True)
class Import:
    source: str
    """The importing module, e.g. evaluator.ingest.files."""
    target: str
    """The imported module, e.g. evaluator.queue.producer."""
    path: Path
    line: int
    runs_on_import: bool
    """At module level, outside `if TYPE_CHECKING:`: it runs when the source is imported."""

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def package_of(module: str) -> str:
    """The top-level package of an evaluator module: evaluator.ingest.otel.x -> ingest."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "evaluator"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    found: list[Import] = []

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_runs = runs
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                child_runs = False
            elif isinstance(child, ast.If) and _is_type_checking(child):
                child_runs = False
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, path, child.lineno, runs)
                             for alias in child.names if alias.name.startswith("evaluator"))
            elif isinstance(child, ast.ImportFrom):
                target = _absolute(module, child)
                if target.startswith("evaluator"):
                    found.append(Import(module, target, path, child.lineno, runs))
                    # `from evaluator.store import duckdb_store` imports the submodule too
                    found.extend(Import(module, f"{target}.{alias.name}", path, child.lineno, runs)
                                 for alias in child.names if f"{target}.{alias.name}" in MODULES)
            visit(child, child_runs)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return found


IMPORTS: list[Import] = [imp for module in MODULES for imp in imports_of(module)]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan), as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(graph, set(component)) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path start -> ... -> start inside one strongly connected component (breadth first)."""
    start = min(component)
    paths = {nxt: [start, nxt] for nxt in sorted(graph[start]) if nxt in component}
    queue = list(paths)
    while queue:
        node = queue.pop(0)
        if node == start:
            return paths[node]
        for nxt in sorted(graph[node]):
            if nxt in component and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    return [start, start]


def test_the_parser_sees_the_package():
    """Guards the checks below against passing on nothing."""
    assert {package_of(m) for m in MODULES} >= set(LAYERS) - {"__main__"} | {"evaluator"}
    assert len(IMPORTS) > 300
    assert any(i.target == "evaluator.core.records" for i in IMPORTS)


def test_every_package_has_a_layer():
    unknown = {package_of(m) for m in MODULES} - set(LAYERS) - {"evaluator"}
    assert not unknown, (f"packages without a layer: {sorted(unknown)}; add them to LAYERS here, "
                         "to the package map in README.md and to their __init__ docstring")


def test_no_package_imports_a_higher_layer():
    upward = [f"{i.where()}: {i.source} imports {i.target} "
              f"({package_of(i.source)} is layer {LAYERS[package_of(i.source)]}, "
              f"{package_of(i.target)} is layer {LAYERS[package_of(i.target)]})"
              for i in IMPORTS
              if package_of(i.source) in LAYERS and package_of(i.target) in LAYERS
              and LAYERS[package_of(i.target)] > LAYERS[package_of(i.source)]]
    assert not upward, ("lower layers must not import higher ones; move the code down, or pass "
                        "what it needs in from the caller:\n" + "\n".join(upward))


def test_the_top_level_package_imports_nothing_of_ours():
    """`import evaluator` (the exporter's host app does it) stays light."""
    ours = [i.where() for i in IMPORTS if i.source == "evaluator"]
    assert not ours, ours


def test_no_package_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        source, target = package_of(i.source), package_of(i.target)
        if source != target and target != "evaluator":
            graph[source].add(target)
    cycles = find_cycles(graph)
    assert not cycles, "package import cycles (function-level imports included):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_no_module_import_cycles():
    """Modules importing each other when loaded: the order they are first imported in decides
    whether it works. Function-level and TYPE_CHECKING imports do not run on import."""
    graph: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        if i.runs_on_import and i.target in MODULES and i.target != i.source:
            graph[i.source].add(i.target)
    cycles = find_cycles(graph)
    assert not cycles, ("module import cycles (import from the submodule, not through the "
                        "package __init__):\n" + "\n".join(" -> ".join(c) for c in cycles))


@pytest.mark.parametrize("package", sorted(set(LAYERS) - {"cli", "__main__"}))
def test_every_package_says_what_it_owns_and_may_import(package):
    init = PACKAGE_DIR / package / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    assert len(docstring.split()) >= 8, f"{init.relative_to(ROOT)}: say what the package owns"
    assert "may import" in docstring.lower(), (
        f"{init.relative_to(ROOT)}: add a 'May import: ...' line naming the packages it may "
        "import (its own layer and the ones below, see tests/test_layout.py)")


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


LAZY_MARK = "# lazy:"


def unexplained_function_level_imports(path: Path) -> list[int]:
    """Lines of imports inside functions without a `# lazy: <why>` comment. A run of adjacent
    import statements shares one: on any of its lines or on the line just above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[int] = []

    def explained(run: list[ast.stmt]) -> bool:
        first, last = run[0].lineno, run[-1].end_lineno or run[-1].lineno
        return any(LAZY_MARK in line for line in lines[first - 2:last])

    def check_body(body: list[ast.stmt]) -> None:
        run: list[ast.stmt] = []
        for statement in [*body, None]:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                run.append(statement)
                continue
            if run and not explained(run):
                found.extend(s.lineno for s in run)
            run = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if inside:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    block = getattr(child, field, None)
                    if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                        check_body(block)
            visit(child, inside)

    visit(ast.parse("\n".join(lines), str(path)), False)
    return sorted(set(found))


def test_function_level_imports_say_why_they_are_lazy():
    """A function-level import hides a dependency and costs a lookup each call; it is there only
    when start-up time (or an optional, heavy dependency) needs it, and says so."""
    unexplained = [f"{path.relative_to(ROOT)}:{line}" for path in MODULES.values()
                   for line in unexplained_function_level_imports(path)]
    assert not unexplained, (
        f"move these imports to the top of the module, or add `{LAZY_MARK} <why>` (start-up "
        "time, an optional dependency) on the import or the line above it:\n"
        + "\n".join(unexplained))


def test_the_lazy_import_check_finds_unexplained_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\n\n\n"
        "def a():\n    import json\n    return json\n\n\n"
        "def b():\n    # lazy: heavy\n    import json\n    import csv\n    return json, csv\n\n\n"
        "def c():\n    if True:\n        import json  # lazy: heavy\n        x = 1\n"
        "        import csv\n    return x\n", encoding="utf-8")
    assert unexplained_function_level_imports(source) == [5, 20]
