"""The README's examples run, and its command-line flags exist.

Every ```python block of README.md is executed as written, in a fresh
namespace; a block that defines pytest tests is run by pytest in a child
process. Examples that need a log start their own with
``rekorkit.testing.start_server`` on 127.0.0.1, so nothing leaves this machine.
The ``rekorkit serve`` and ``rekorkit verify`` sections may only name flags the
commands accept, and must name every one of them.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from rekorkit.audit import command as verify_command
from rekorkit.monitor import command as monitor_command
from rekorkit.proxy import command as proxy_command
from rekorkit.server import command as serve_command

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    section: str


def _blocks() -> list[Block]:
    out = []
    for m in _FENCE.finditer(TEXT):
        line = TEXT.count("\n", 0, m.start()) + 1
        headings = re.findall(r"^#{2,3} (.+)$", TEXT[: m.start()], re.MULTILINE)
        out.append(Block(m.group(1), m.group(2), line, headings[-1] if headings else ""))
    return out


def _section(title_start: str) -> str:
    """The text of the ``## `` section whose title starts with ``title_start``."""
    m = re.search(rf"^## {re.escape(title_start)}.*?(?=^## )", TEXT, re.MULTILINE | re.DOTALL)
    assert m is not None, f"README has no section {title_start!r}"
    return m.group(0)


PYTHON = [b for b in _blocks() if b.lang == "python"]


def test_readme_has_python_examples() -> None:
    assert len(PYTHON) >= 8


@pytest.mark.parametrize("block", PYTHON, ids=[f"line{b.line}" for b in PYTHON])
def test_python_example_runs(block: Block, tmp_path: Path) -> None:
    if "def test_" in block.code:
        path = tmp_path / "test_readme_example.py"
        path.write_text(block.code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"\b[1-9]\d* passed\b", done.stdout), done.stdout
        return
    code = compile(block.code, f"README.md:{block.line}", "exec")
    exec(code, {"__name__": "readme_example"})


def _parser(configure: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    configure(parser)
    return parser


COMMANDS = {
    "serve": ("`rekorkit serve`", serve_command.configure),
    "verify": ("`rekorkit verify`", verify_command.configure),
    "proxy": ("`rekorkit proxy`", proxy_command.configure),
    "monitor": ("`rekorkit monitor`", monitor_command.configure),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_section_names_exactly_the_real_flags(name: str) -> None:
    title, configure = COMMANDS[name]
    parser = _parser(configure)
    real = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    real.discard("--help")
    named = set(_FLAG.findall(_section(title)))
    assert named - real == set(), "documented but not accepted"
    assert real - named == set(), "accepted but not documented"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_lines_parse(name: str) -> None:
    _title, configure = COMMANDS[name]
    lines = [
        line.split(" #", 1)[0]
        for b in _blocks()
        if b.lang == "sh"
        for line in b.code.splitlines()
        if line.startswith(f"rekorkit {name} ")
    ]
    assert lines, f"no `rekorkit {name}` command line in the README"
    for line in lines:
        args = shlex.split(line)[2:]
        try:
            _parser(configure).parse_args(args)
        except (argparse.ArgumentError, SystemExit) as exc:
            pytest.fail(f"{line!r} does not parse: {exc}")


def test_benchmark_markers_are_intact() -> None:
    assert TEXT.count("<!-- bench:start -->") == 1
    assert TEXT.count("<!-- bench:end -->") == 1
    assert TEXT.index("<!-- bench:start -->") < TEXT.index("<!-- bench:end -->")
