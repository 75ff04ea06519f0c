"""Fault injection for tests and demos: errors, latency, drops, truncation, forks.

Enabled only by ``rekorkit serve --faults`` on a loopback address, and steered
at runtime through ``/_rekorkit/faults`` (loopback clients only):

* ``GET`` lists the active rules and counters;
* ``POST`` with ``{"rules": [...], "seed": 1}`` adds rules (``"replace": true``
  replaces them), each rule a :class:`FaultRule` as JSON;
* ``DELETE`` clears every rule and turns fork mode off.

Fork mode (a lying log) is ``POST /_rekorkit/fork`` with ``{"at": K, "extra": M,
"readers": "all"|"header"}``, see :mod:`rekorkit.server.fork`.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rekorkit.errors import MalformedError

__all__ = ["FaultController", "FaultMiddleware", "FaultRequest", "FaultRule", "is_loopback"]

ACTIONS = ("status", "drop", "truncate", "latency")
STATUSES = (429, 500, 502, 503, 504)
MAX_LATENCY = 600.0

_HTML = (
    "<html>\r\n<head><title>{s} {r}</title></head>\r\n<body>\r\n"
    "<center><h1>{s} {r}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address or name."""
    if host is None:
        return False
    return host == "localhost" or host == "::1" or host.startswith("127.")


@dataclass(slots=True)
class FaultRule:
    """One injected fault.

    Attributes:
        action: ``status`` (answer ``status`` instead of the real response),
            ``drop`` (close the connection without answering), ``truncate``
            (send half the body, then close) or ``latency`` (wait, then serve).
        status: the HTTP status for ``status`` rules (429, 500, 502, 503, 504).
        count: apply to the next N matching requests only (None: no limit).
        fraction: apply to this share of matching requests (None: all).
        retry_after: seconds for the ``Retry-After`` header (429/503).
        latency: seconds of delay for ``latency`` rules.
        path_prefix: only requests whose path starts with this.
        method: only this HTTP method (None: any).
        html: send an nginx-style HTML body instead of Rekor's JSON (429/502 default to HTML).
    """

    action: str = "status"
    status: int = 503
    count: int | None = None
    fraction: float | None = None
    retry_after: int | None = None
    latency: float = 0.0
    path_prefix: str = "/"
    method: str | None = None
    html: bool | None = None
    hits: int = field(default=0)

    @classmethod
    def from_json(cls, obj: Any, where: str = "rule") -> FaultRule:
        """Build a rule from its JSON form, every field type- and range-checked.

        Raises:
            MalformedError: an unknown field, or a field of the wrong type or out
                of range (the message names the field and ``where``).
        """
        if not isinstance(obj, dict):
            raise MalformedError(f"{where}: a fault rule must be a JSON object", where=where)
        extra = set(obj) - set(_RULE_FIELDS)
        if extra:
            raise MalformedError(f"{where}: unknown fault rule fields {sorted(extra)}", where=where)
        for name, value in obj.items():
            check = _RULE_FIELDS[name]
            problem = check(value)
            if problem is not None:
                raise MalformedError(
                    f"{where}.{name}: {problem}, not {json.dumps(value)[:80]}",
                    where=f"{where}.{name}",
                )
        rule = cls(**obj)
        if rule.action == "status" and rule.status not in STATUSES:
            raise MalformedError(f"{where}.status: must be one of {STATUSES}", where=where)
        return rule


_Check: TypeAlias = Callable[[Any], "str | None"]
"""A field check: None when the value is fine, else what it must be."""


def _choice(options: tuple[object, ...]) -> _Check:
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) and v in options else f"must be one of {options}"

    return check


def _integer(low: int, high: int, *, optional: bool = False) -> _Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high:
            return None
        return f"must be an integer in {low}..{high}" + (" or null" if optional else "")

    return check


def _number(low: float, high: float, *, optional: bool = False) -> _Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high:
            return None  # NaN fails the range test
        return f"must be a number in [{low}, {high}]" + (" or null" if optional else "")

    return check


def _path_prefix(v: Any) -> str | None:
    if isinstance(v, str) and v.startswith("/") and len(v) <= 1024:
        return None
    return "must be a path starting with '/' (at most 1024 characters)"


def _method(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and v.isascii() and v.isalpha() and len(v) <= 16):
        return None
    return "must be an HTTP method name or null"


def _flag(v: Any) -> str | None:
    return None if v is None or isinstance(v, bool) else "must be true, false or null"


_RULE_FIELDS: dict[str, _Check] = {
    "action": _choice(ACTIONS),
    "status": _integer(100, 599),
    "count": _integer(0, 2**31, optional=True),
    "fraction": _number(0.0, 1.0, optional=True),
    "retry_after": _integer(0, 86_400, optional=True),
    "latency": _number(0.0, MAX_LATENCY),
    "path_prefix": _path_prefix,
    "method": _method,
    "html": _flag,
}
MAX_RULES = 64


@dataclass(frozen=True, slots=True)
class FaultRequest:
    """A checked ``POST /_rekorkit/faults`` body.

    Attributes:
        rules: the rules to add.
        replace: drop the active rules first.
        seed: reseed the fraction sampler (None: keep it).
    """

    rules: list[FaultRule]
    replace: bool = False
    seed: int | None = None

    @classmethod
    def from_json(cls, obj: Any) -> FaultRequest:
        """Check the whole body before anything changes.

        Raises:
            MalformedError: what is wrong and where (``rules[2].fraction``).
        """
        if not isinstance(obj, dict):
            raise MalformedError("the body must be a JSON object", where="body")
        extra = set(obj) - {"rules", "replace", "seed"}
        if extra:
            raise MalformedError(f"unknown fields {sorted(extra)}", where="body")
        rules = obj.get("rules", [])
        if not isinstance(rules, list) or len(rules) > MAX_RULES:
            raise MalformedError(f"rules: must be a list of at most {MAX_RULES}", where="rules")
        replace = obj.get("replace", False)
        if not isinstance(replace, bool):
            raise MalformedError("replace: must be true or false", where="replace")
        seed = obj.get("seed")
        problem = _integer(-(2**63), 2**63 - 1, optional=True)(seed)
        if problem is not None:
            raise MalformedError(f"seed: {problem}", where="seed")
        checked = [FaultRule.from_json(r, f"rules[{n}]") for n, r in enumerate(rules)]
        return cls(checked, replace, seed)


class FaultController:
    """The active fault rules, shared by the middleware and the admin endpoint."""

    def __init__(self, seed: int | None = None):
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected = 0

    def set_rules(
        self, rules: list[FaultRule], *, replace: bool = False, seed: int | None = None
    ) -> None:
        """Add (or replace with) ``rules``; ``seed`` reseeds the fraction sampler."""
        with self._lock:
            if replace:
                self._rules = []
            self._rules.extend(rules)
            if seed is not None:
                self._random.seed(seed)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules = []

    def snapshot(self) -> dict[str, Any]:
        """The rules and counters as JSON."""
        with self._lock:
            return {"rules": [asdict(r) for r in self._rules], "injected": self.injected}

    def pick(self, method: str, path: str) -> list[FaultRule]:
        """The rules that fire for this request (consuming their counts)."""
        fired: list[FaultRule] = []
        with self._lock:
            for rule in self._rules:
                if not path.startswith(rule.path_prefix):
                    continue
                if rule.method is not None and rule.method.upper() != method:
                    continue
                if rule.count is not None and rule.count <= 0:
                    continue
                if rule.fraction is not None and self._random.random() >= rule.fraction:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                rule.hits += 1
                fired.append(rule)
                if rule.action != "latency":
                    break  # one terminal fault per request
            self._rules = [r for r in self._rules if r.count is None or r.count > 0]
            if fired:
                self.injected += 1
        return fired


def _abort(send: Send, *, flush: bool = False) -> bool:
    """Close the client connection (uvicorn's transport); False if unreachable.

    ``flush`` sends what is buffered first (a truncated body); otherwise the
    connection is reset with nothing more sent (a dropped request).
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return False
    if flush:
        transport.close()
    else:
        transport.abort()
    # Tell uvicorn the peer is gone, so it does not try to answer with a 500.
    if cycle is not None and hasattr(cycle, "disconnected"):
        cycle.disconnected = True
    return True


async def _send_status(rule: FaultRule, send: Send) -> None:
    status = rule.status
    html = rule.html if rule.html is not None else status in (429, 502)
    if html:
        body = _HTML.format(s=status, r=_REASONS[status]).encode()
        ctype = b"text/html"
    else:
        body = json.dumps(
            {"code": status, "message": f"injected fault: {_REASONS[status]}"}
        ).encode()
        ctype = b"application/json"
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if rule.retry_after is not None:
        headers.append((b"retry-after", str(int(rule.retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    """ASGI middleware that applies the controller's rules before the app runs.

    Paths under ``/_rekorkit/`` (the admin endpoints) and ``/healthz`` are never faulted.
    """

    def __init__(self, app: ASGIApp, controller: FaultController):
        self.app = app
        self.controller = controller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_rekorkit/") or path == "/healthz":
            await self.app(scope, receive, send)
            return
        for rule in self.controller.pick(scope["method"], path):
            if rule.action == "latency":
                await asyncio.sleep(rule.latency)
            elif rule.action == "status":
                await _send_status(rule, send)
                return
            elif rule.action == "drop":
                if _abort(send):
                    return
                await _send_status(FaultRule(status=502), send)
                return
            elif rule.action == "truncate":
                await self.app(scope, receive, _truncating(send))
                return
        await self.app(scope, receive, send)


def _truncating(send: Send) -> Send:
    """A ``send`` that forwards the headers and half of the body, then drops the connection."""
    state = {"done": False}

    async def wrapped(message: Message) -> None:
        if state["done"]:
            return
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            state["done"] = True
            if not _abort(send, flush=True):
                raise ConnectionAbortedError("injected truncation")
            return
        await send(message)

    return wrapped
