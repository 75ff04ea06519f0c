"""A verifying tile proxy for C2SP tlog-tiles logs (Rekor v2).

:class:`ProxyService` verifies every tile and bundle up to a signed,
consistent checkpoint before serving or caching it; :func:`create_app` is its
Starlette app; :class:`SyncJob` follows the upstream (``edge`` or ``mirror``).
The ``rekorkit proxy`` command runs them with uvicorn; :func:`start_proxy`
runs one in a background thread of this process.
"""

from rekorkit.proxy.app import create_app
from rekorkit.proxy.embedded import (
    RunningProxy,
    serve_in_thread,
    start_proxy,
    start_proxy_process,
)
from rekorkit.proxy.service import NotInTreeError, ProxyService, Served
from rekorkit.proxy.sync import SyncJob, SyncMode, SyncStatus

__all__ = [
    "NotInTreeError",
    "ProxyService",
    "RunningProxy",
    "Served",
    "SyncJob",
    "SyncMode",
    "SyncStatus",
    "create_app",
    "serve_in_thread",
    "start_proxy",
    "start_proxy_process",
]
