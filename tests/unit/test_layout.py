"""The layout rules of docs/design.md, checked over the source tree (no import of it)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "lockstep"
MAX_LINES = 500
LOOSE = {"__init__.py", "__main__.py", "errors.py", "journal.py", "model.py", "secret.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_at_module_level(path: Path, name: str) -> Iterator[str]:
    """What the module imports when it is imported: not inside functions, not under
    ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {d for d in imported_at_module_level(path, name) if d in paths and d != name}
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_at_most_six_modules_are_loose_at_the_top() -> None:
    assert {p.name for p in PACKAGE.glob("*.py")} <= LOOSE


def test_no_source_bench_or_test_file_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for folder in (PACKAGE, ROOT / "bench", ROOT / "tests")
        for p in folder.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_import_cycle_at_module_level() -> None:
    assert cycles(import_graph()) == []


def test_the_service_never_imports_the_cli() -> None:
    graph = import_graph()
    offenders = {
        m: sorted(d for d in deps if d.startswith("lockstep.cli"))
        for m, deps in graph.items()
        if m.startswith("lockstep.service")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_test_modules_have_unique_names() -> None:
    # pytest imports test modules by their base name (the folders are not packages).
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
