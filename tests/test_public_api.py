"""The top-level package: ``__all__``, lazy loading, and what ``import rekorkit`` costs."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import rekorkit
from rekorkit import checkpoint, client, entries, merkle, note, trust
from rekorkit.store import duckdb as duckdb_store

INIT = Path(rekorkit.__file__)


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def test_every_name_in_all_resolves() -> None:
    for name in rekorkit.__all__:
        assert getattr(rekorkit, name) is not None, name
    assert len(set(rekorkit.__all__)) == len(rekorkit.__all__)


def test_all_names_no_private_module() -> None:
    assert not [n for n in rekorkit.__all__ if n.startswith("_") and n != "__version__"]
    assert "server" not in rekorkit.__all__
    assert "testing" not in rekorkit.__all__


def test_dir_lists_every_public_name() -> None:
    listed = dir(rekorkit)
    assert set(rekorkit.__all__) <= set(listed)
    assert listed == sorted(listed)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = rekorkit.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("leaf_hash", merkle),
        ("root", merkle),
        ("verify_inclusion_batch", merkle),
        ("CompactRange", merkle),
        ("open_checkpoint", checkpoint),
        ("WitnessPolicy", checkpoint),
        ("verify_entry", entries),
        ("EntryVerification", entries),
        ("LogEntry", entries),
        ("load_trusted_root", trust),
        ("parse_verifier_key", note),
        ("RekorV1Client", client),
        ("AsyncTileReader", client),
        ("VerifyOptions", client),
        ("DuckDBStore", duckdb_store),
    ],
)
def test_names_are_the_submodule_objects(name: str, module: types.ModuleType) -> None:
    assert getattr(rekorkit, name) is getattr(module, name)


def test_submodules_are_modules() -> None:
    for name in ("merkle", "tiles", "note", "checkpoint", "trust", "client", "store"):
        value = getattr(rekorkit, name)
        assert isinstance(value, types.ModuleType)
        assert value is importlib.import_module(f"rekorkit.{name}")


def test_version_is_a_string() -> None:
    assert isinstance(rekorkit.__version__, str)
    assert rekorkit.__version__.count(".") >= 2


def _type_checking_imports() -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` block of ``__init__.py``."""
    tree = ast.parse(INIT.read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    found: dict[str, str] = {}
    for stmt in block.body:
        assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
        for alias in stmt.names:
            if stmt.module == "rekorkit":
                found[alias.name] = f"rekorkit.{alias.name}"
            else:
                found[alias.name] = stmt.module
    return found


def test_type_checkers_see_what_runtime_loads() -> None:
    # The lazy table, __all__ and the TYPE_CHECKING imports are three lists of
    # the same names; a name added to one and not the others is a bug.
    lazy = rekorkit._LAZY
    assert _type_checking_imports() == lazy
    assert set(lazy) | {"__version__", "errors"} == set(rekorkit.__all__)


def test_import_loads_neither_server_nor_heavy_dependencies() -> None:
    out = _fresh(
        "import json, sys, rekorkit\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('rekorkit', 'uvicorn', 'starlette', 'httpx', 'duckdb', "
        "'pyarrow', 'numpy'))))"
    )
    loaded = set(json.loads(out))
    for heavy in ("rekorkit.server", "uvicorn", "starlette", "httpx", "duckdb", "pyarrow"):
        assert heavy not in loaded
    assert "rekorkit.errors" in loaded


def test_using_every_name_still_leaves_the_server_unloaded() -> None:
    out = _fresh(
        "import json, sys, rekorkit\n"
        "for name in rekorkit.__all__: getattr(rekorkit, name)\n"
        "print(json.dumps([m for m in ('rekorkit.server', 'uvicorn', 'starlette') "
        "if m in sys.modules]))"
    )
    assert json.loads(out) == []


def test_first_access_loads_only_that_module() -> None:
    out = _fresh(
        "import json, sys, rekorkit\n"
        "rekorkit.leaf_hash(b'')\n"
        "print(json.dumps(['rekorkit.merkle' in sys.modules, 'rekorkit.client' in sys.modules, "
        "'httpx' in sys.modules]))"
    )
    assert json.loads(out) == [True, False, False]
