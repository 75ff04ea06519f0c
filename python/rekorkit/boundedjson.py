"""JSON from untrusted sources, with its nesting depth bounded before it is parsed.

:func:`json.loads` recurses once per nested array or object, so a body of
``b"[" * 100000`` ends in :class:`RecursionError` (or, on a small thread
stack, worse). :func:`loads` measures the depth first, without recursion,
and refuses anything deeper than :data:`MAX_DEPTH` with a
:class:`~rekorkit.errors.MalformedError`; every other failure is one too.
Rekor's JSON (RFC 8259 documents: entries, bodies, bundles, trusted roots)
nests fewer than 16 levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rekorkit.errors import MalformedError

__all__ = ["MAX_DEPTH", "loads", "nesting_depth"]

MAX_DEPTH = 128
"""Deepest nesting of arrays and objects accepted."""

# A JSON string token (RFC 8259 §7): what a bracket inside it is not.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENERS = ("[", "{")


def _text(data: str | bytes | bytearray | memoryview, what: str) -> str:
    if isinstance(data, str):
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError(
            f"{what}: expected JSON text, got {type(data).__name__}", what=what, where="type"
        )
    raw = bytes(data)
    try:
        return raw.decode(json.detect_encoding(raw))
    except (UnicodeDecodeError, LookupError) as exc:
        raise MalformedError(
            f"{what}: not UTF-8 JSON text: {exc}", what=what, where=f"byte {_start(exc)}"
        ) from exc


def _start(exc: Exception) -> int:
    return exc.start if isinstance(exc, UnicodeDecodeError) else 0


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, ignoring strings.

    Counts only; it does not validate. On invalid JSON the count may be off,
    but never below what :func:`json.loads` would recurse into before failing.
    """
    depth = deepest = 0
    for token in re.finditer(r"[\[\]{}]", _STRING.sub("", text)):
        if token.group() in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads(
    data: str | bytes | bytearray | memoryview,
    *,
    what: str,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parses JSON text whose nesting is at most ``max_depth``.

    Args:
        data: JSON text, ``str`` or UTF-8/16/32 bytes (RFC 8259 §8.1).
        what: the kind of input, for the error.
        max_depth: deepest nesting accepted.

    Raises:
        MalformedError: not JSON, not text, or nested deeper than ``max_depth``.
    """
    text = _text(data, what)
    openers = text.count("[") + text.count("{")
    if openers > max_depth and (depth := nesting_depth(text)) > max_depth:
        raise MalformedError(
            f"{what}: JSON nested {depth} deep, more than {max_depth}", what=what, where="depth"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        where = f"char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else None
        raise MalformedError(f"{what}: not JSON: {exc}", what=what, where=where) from exc
