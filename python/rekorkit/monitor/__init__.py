"""Continuous sync and monitoring of transparency logs.

* :mod:`rekorkit.monitor.service`: :class:`RekorSyncService`, the sync loop;
* :mod:`rekorkit.monitor.detector`: :class:`DivergenceDetector`;
* :mod:`rekorkit.monitor.alerts`: alerts, their store and outbox;
* :mod:`rekorkit.monitor.publishers`: JSON lines, webhook, exec and callback publishers;
* :mod:`rekorkit.monitor.watchlist`: identities, digests and fingerprints to watch for;
* :mod:`rekorkit.monitor.config`: ``monitor.toml``;
* :mod:`rekorkit.monitor.metrics`: Prometheus metrics, ``/healthz``;
* :mod:`rekorkit.monitor.command`: ``rekorkit monitor``.
"""

from __future__ import annotations

from rekorkit.monitor.alerts import Alert, AlertKind, AlertStore, StoredAlert
from rekorkit.monitor.config import LogConfig, MonitorConfig, Vantage, load_config, parse_config
from rekorkit.monitor.detector import DivergenceDetector
from rekorkit.monitor.publishers import (
    AlertPublisher,
    CallbackPublisher,
    Dispatcher,
    ExecPublisher,
    JsonLinesPublisher,
    WebhookPublisher,
    sign_body,
)
from rekorkit.monitor.service import LogStatus, RekorSyncService
from rekorkit.monitor.watchlist import (
    IdentityWatch,
    OIDWatch,
    Watchlist,
    WatchMatch,
    load_monitored_values,
)

__all__ = [
    "Alert",
    "AlertKind",
    "AlertPublisher",
    "AlertStore",
    "CallbackPublisher",
    "Dispatcher",
    "DivergenceDetector",
    "ExecPublisher",
    "IdentityWatch",
    "JsonLinesPublisher",
    "LogConfig",
    "LogStatus",
    "MonitorConfig",
    "OIDWatch",
    "RekorSyncService",
    "StoredAlert",
    "Vantage",
    "WatchMatch",
    "Watchlist",
    "WebhookPublisher",
    "load_config",
    "load_monitored_values",
    "parse_config",
    "sign_body",
]
