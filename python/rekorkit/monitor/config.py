"""The monitor's configuration: ``monitor.toml``.

```toml
db = "monitor.duckdb"          # the store (entries, checkpoints, alerts): a DuckDB file,
                               # or postgresql://user@host/db shared by several monitors
delivery_lease = 60            # seconds an alert delivery is reserved for one monitor
poll_interval = 10             # seconds between rounds (per log, overridable)
metrics_port = 9464            # /healthz and /metrics (omit: no HTTP endpoint)
heartbeat_interval = 300       # dead-man's switch: a heartbeat to every publisher

[[logs]]
name = "rekor-local"
url = "http://127.0.0.1:3000"
key = "rekor-local+07826204+Aaxa5x..."   # note verifier key, PEM file or trusted_root.json
api = "v2"                     # v2 (tiles), v1 (REST) or auto
start = 0                      # first index to sync, or "head" (from the current size)
stale_after = 3600             # alert when no new checkpoint for this long
witnesses = ["witness+1234abcd+A..."]    # optional k-of-n witness policy
witness_threshold = 1

[[logs.vantage]]               # second vantage points: mirrors, proxies
name = "mirror"
url = "http://mirror.example"
headers = { "x-view" = "eu" }

[watchlist]
digests = ["sha256:..."]
fingerprints = ["..."]
monitored_values = "rekor-monitor.yaml"  # rekor-monitor's monitoredValues file
[[watchlist.identities]]
subject = "alice@example.com"
issuers = ["https://accounts.google.com"]
regex = false

[[publishers]]
type = "jsonl"                 # jsonl | webhook | exec
path = "alerts.jsonl"          # "-" for stdout
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rekorkit.client.adaptive import ADAPTIVE_CEILING
from rekorkit.errors import MalformedError
from rekorkit.monitor.publishers import (
    AlertPublisher,
    ExecPublisher,
    JsonLinesPublisher,
    WebhookPublisher,
)
from rekorkit.monitor.watchlist import IdentityWatch, OIDWatch, Watchlist, load_monitored_values
from rekorkit.store.open import is_postgres_url

__all__ = ["LogConfig", "MonitorConfig", "Vantage", "load_config"]


@dataclass(frozen=True, slots=True)
class Vantage:
    """A second place to read the same log from (mirror, proxy), compared for split views."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """One log to follow.

    Attributes:
        name: the log's name in alerts and metrics.
        url: tile prefix (v2) or API root (v1).
        key: note verifier key, PEM file or trusted_root.json (as ``rekorkit verify --key``).
        api: ``"v2"``, ``"v1"`` or ``"auto"``.
        origin: the expected checkpoint origin (default: from the key).
        start: first index to sync, or ``None`` to start from the size seen first.
        poll_interval: seconds between rounds.
        stale_after: seconds without a new checkpoint before a stale-log alert.
        max_batch: entries verified and committed per step of a catch-up.
        concurrency: requests in flight, fixed; ``None`` (default): tile
            reads adapt to the link up to ``max_concurrency`` in flight,
            Rekor v1 reads keep 16.
        max_concurrency: the most tile reads in flight the adapted window may
            reach (default ``ADAPTIVE_CEILING``, 256).
        error_alert_after: failed rounds in a row before a log-error alert.
        timeout: seconds per HTTP request.
        witnesses: witness verifier keys for a k-of-n policy (c2sp.org/tlog-witness).
        witness_threshold: how many of them must cosign.
        vantage: second vantage points.
    """

    name: str
    url: str
    key: str
    api: str = "v2"
    origin: str | None = None
    start: int | None = 0
    poll_interval: float = 10.0
    stale_after: float | None = None
    max_batch: int = 250_000
    concurrency: int | None = None
    max_concurrency: int = ADAPTIVE_CEILING
    error_alert_after: int = 3
    timeout: float = 30.0
    witnesses: tuple[str, ...] = ()
    witness_threshold: int = 0
    vantage: tuple[Vantage, ...] = ()


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """The whole monitor: store, logs, watchlist, publishers and the HTTP endpoint."""

    db: str
    logs: tuple[LogConfig, ...]
    watchlist: Watchlist = field(default_factory=Watchlist)
    publishers: tuple[AlertPublisher, ...] = ()
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    heartbeat_interval: float | None = None
    heartbeat_url: str | None = None
    delivery_interval: float = 5.0
    delivery_lease: float = 60.0


def _db(value: Any, base: Path) -> str:
    """The store location: a ``postgresql://`` URL as it is, a DuckDB path under ``base``."""
    if not isinstance(value, str) or not value:
        raise MalformedError(
            "db is a file path or a postgresql:// URL", what="monitor config", where="db"
        )
    return value if is_postgres_url(value) else str(base / value)


def _get(doc: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if value is not None and not isinstance(value, typ):
        raise MalformedError(f"{key} has the wrong type", what="monitor config", where=where)
    return value


def _given(value: Any, default: Any) -> Any:
    """``value`` unless it is absent: a 0 given is kept, to be refused, not replaced."""
    return default if value is None else value


def _require(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedError(f"{key} is required", what="monitor config", where=where)
    return value


def _log(doc: Any, i: int, defaults: Mapping[str, Any]) -> LogConfig:
    where = f"logs[{i}]"
    if not isinstance(doc, Mapping):
        raise MalformedError("must be a table", what="monitor config", where=where)
    url = _require(doc, "url", where)
    api = str(doc.get("api", "v2"))
    if api not in ("v1", "v2", "auto"):
        raise MalformedError(f"api must be v1, v2 or auto, not {api!r}", where=where)
    start_raw = doc.get("start", 0)
    if start_raw == "head":
        start: int | None = None
    elif isinstance(start_raw, int) and not isinstance(start_raw, bool) and start_raw >= 0:
        start = start_raw
    else:
        raise MalformedError('start is an index >= 0 or "head"', where=where)
    vantage = []
    for j, v in enumerate(doc.get("vantage") or []):
        vw = f"{where}.vantage[{j}]"
        if not isinstance(v, Mapping):
            raise MalformedError("must be a table", what="monitor config", where=vw)
        vurl = _require(v, "url", vw)
        headers = _get(v, "headers", dict, vw) or {}
        vantage.append(Vantage(str(v.get("name", vurl)), vurl, {**headers}))
    num = (int, float)
    poll = _given(_get(doc, "poll_interval", num, where), defaults.get("poll_interval", 10.0))
    witnesses = tuple(str(w) for w in _get(doc, "witnesses", list, where) or [])
    cfg = LogConfig(
        name=str(doc.get("name") or url),
        url=url.rstrip("/"),
        key=_require(doc, "key", where),
        api=api,
        origin=_get(doc, "origin", str, where),
        start=start,
        poll_interval=float(poll),
        stale_after=_get(doc, "stale_after", num, where),
        max_batch=int(_given(_get(doc, "max_batch", int, where), 250_000)),
        concurrency=_get(doc, "concurrency", int, where),
        max_concurrency=int(_given(_get(doc, "max_concurrency", int, where), ADAPTIVE_CEILING)),
        error_alert_after=int(_given(_get(doc, "error_alert_after", int, where), 3)),
        timeout=float(_given(_get(doc, "timeout", num, where), 30.0)),
        witnesses=witnesses,
        witness_threshold=int(_get(doc, "witness_threshold", int, where) or len(witnesses)),
        vantage=tuple(vantage),
    )
    if (
        cfg.poll_interval <= 0
        or cfg.max_batch < 1
        or cfg.error_alert_after < 1
        or cfg.timeout <= 0
        or (cfg.concurrency is not None and cfg.concurrency < 1)
        or cfg.max_concurrency < 1
    ):
        raise MalformedError(
            "poll_interval, max_batch, concurrency, max_concurrency, error_alert_after"
            " and timeout must be positive",
            where=where,
        )
    return cfg


def _watchlist(doc: Any, base: Path) -> Watchlist:
    if doc is None:
        return Watchlist()
    if not isinstance(doc, Mapping):
        raise MalformedError("must be a table", what="monitor config", where="watchlist")
    identities = []
    for i, item in enumerate(doc.get("identities") or []):
        where = f"watchlist.identities[{i}]"
        if not isinstance(item, Mapping):
            raise MalformedError("must be a table", what="monitor config", where=where)
        identities.append(
            IdentityWatch(
                _require(item, "subject", where),
                tuple(str(x) for x in item.get("issuers") or []),
                regex=bool(item.get("regex", False)),
                name=str(item.get("name", "")),
            )
        )
    digests = [str(d) for d in doc.get("digests") or []]
    fingerprints = [str(f) for f in doc.get("fingerprints") or []]
    oids: list[OIDWatch] = []
    mv = doc.get("monitored_values")
    if mv is not None:
        extra = load_monitored_values(base / str(mv))
        identities.extend(extra.identities)
        fingerprints.extend(extra.fingerprints)
        oids.extend(extra.oids)
    return Watchlist(identities, digests, fingerprints, oids)


def _publisher(doc: Any, i: int, base: Path) -> AlertPublisher:
    where = f"publishers[{i}]"
    if not isinstance(doc, Mapping):
        raise MalformedError("must be a table", what="monitor config", where=where)
    kind = doc.get("type")
    name = _get(doc, "name", str, where)
    if kind == "jsonl":
        path = str(doc.get("path", "-"))
        return JsonLinesPublisher(path if path == "-" else base / path, name=name)
    if kind == "webhook":
        secret = _get(doc, "secret", str, where)
        env = _get(doc, "secret_env", str, where)
        if env is not None:
            secret = os.environ.get(env)
            if secret is None:
                raise MalformedError(f"environment variable {env} is not set", where=where)
        return WebhookPublisher(
            _require(doc, "url", where),
            secret=secret,
            attempts=int(doc.get("attempts", 3)),
            timeout=float(doc.get("timeout", 10.0)),
            name=name,
        )
    if kind == "exec":
        command = doc.get("command")
        if isinstance(command, str):
            command = [command]
        if not isinstance(command, list) or not command:
            raise MalformedError("command is a list of words", where=where)
        return ExecPublisher(
            [str(c) for c in command], timeout=float(doc.get("timeout", 30.0)), name=name
        )
    raise MalformedError(f"type must be jsonl, webhook or exec, not {kind!r}", where=where)


def parse_config(doc: Mapping[str, Any], base: Path = Path(".")) -> MonitorConfig:
    """A :class:`MonitorConfig` from a parsed TOML document (paths relative to ``base``).

    Raises:
        MalformedError: a missing or mistyped setting, named by its place.
    """
    logs_doc = doc.get("logs")
    if not isinstance(logs_doc, list) or not logs_doc:
        raise MalformedError("at least one [[logs]] table is required", what="monitor config")
    logs = tuple(_log(d, i, doc) for i, d in enumerate(logs_doc))
    names = [log.name for log in logs]
    if len(set(names)) != len(names):
        raise MalformedError("log names must be unique", what="monitor config", where="logs")
    port = _get(doc, "metrics_port", int, "metrics_port")
    hb = _get(doc, "heartbeat_interval", (int, float), "heartbeat_interval")
    return MonitorConfig(
        db=_db(doc.get("db", "monitor.duckdb"), base),
        logs=logs,
        watchlist=_watchlist(doc.get("watchlist"), base),
        publishers=tuple(_publisher(p, i, base) for i, p in enumerate(doc.get("publishers") or [])),
        metrics_host=str(doc.get("metrics_host", "127.0.0.1")),
        metrics_port=port,
        heartbeat_interval=float(hb) if hb else None,
        heartbeat_url=_get(doc, "heartbeat_url", str, "heartbeat_url"),
        delivery_interval=float(doc.get("delivery_interval", 5.0)),
        delivery_lease=_positive(doc, "delivery_lease", 60.0),
    )


def _positive(doc: Mapping[str, Any], key: str, default: float) -> float:
    value = _get(doc, key, (int, float), key)
    if value is None:
        return default
    if isinstance(value, bool) or not value > 0:
        raise MalformedError(
            f"{key} must be a positive number of seconds", what="monitor config", where=key
        )
    return float(value)


def load_config(path: str | Path) -> MonitorConfig:
    """Read ``monitor.toml`` (relative paths in it are relative to the file).

    Raises:
        MalformedError: the file is not TOML or a setting is wrong.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedError(f"cannot read {p}: {exc}", what="monitor config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MalformedError(f"{p}: {exc}", what="monitor config") from exc
    return parse_config(doc, p.parent)
