"""The package's shape: no import cycles, no crowded top level, no references a clone cannot open.

Imports are read from the source (module level, ``TYPE_CHECKING`` blocks and
function bodies alike: a cycle hidden inside a function or behind the type
checker is still a cycle). The root package is left out: it imports nothing
at run time but ``errors`` and loads every other name lazily, which
tests/test_public_api.py checks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rekorkit

PACKAGE = Path(rekorkit.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & known
            out.update(submodules or {target})
    return {m for m in out if m in known and m != "rekorkit"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imports(path, name, known) - {name}
        for name, path in modules.items()
        if name != "rekorkit"
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_cycle_detection_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_top_level_holds_few_modules() -> None:
    # One concept per package: a crowded top level is subpackages waiting to be made.
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_"))
    assert len(top) <= 14, top


def test_no_module_name_shares_a_prefix_with_two_others() -> None:
    top = [p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")]
    prefixes = [name.split("_")[0] for name in top if "_" in name]
    crowded = {p for p in prefixes if sum(1 for name in top if name.startswith(p)) > 2}
    assert not crowded, crowded


_PRIVATE_DOC = re.compile(r"\b(?:TLOG|REKOR_API|DESIGN|STYLE|PROVENANCE)\.md\b")


def test_sources_cite_public_specs_only() -> None:
    # A reader of a clone must be able to open every reference: public specs
    # (RFC sections, c2sp.org pages, the Rekor OpenAPI), not notes kept elsewhere.
    roots = [PACKAGE, PACKAGE.parent.parent / "rust"]
    offenders = [
        f"{path.name}:{n}"
        for root in roots
        for path in [*root.rglob("*.py"), *root.rglob("*.rs"), *root.rglob("*.pyi")]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _PRIVATE_DOC.search(line)
    ]
    assert offenders == []
