"""A verifying tile proxy for C2SP tlog-tiles logs (Rekor v2).

:class:`ProxyService` verifies every tile and bundle up to a signed,
consistent checkpoint before serving or caching it; :func:`create_app` is its
Starlette app; :class:`SyncJob` follows the upstream (``edge`` or ``mirror``).
The ``rekorkit proxy`` command runs them with uvicorn; :func:`start_proxy`
runs one in a background thread of this process. :class:`TlogMirror` (and its
app, :func:`create_mirror_app`) is a c2sp.org/tlog-mirror mirror that logs
push checkpoints and entry packages to, and that cosigns what it holds.
"""

from rekorkit.proxy.app import create_app
from rekorkit.proxy.embedded import (
    RunningProxy,
    serve_in_thread,
    start_proxy,
    start_proxy_process,
)
from rekorkit.proxy.mirror_app import create_mirror_app
from rekorkit.proxy.service import NotInTreeError, ProxyService, Served
from rekorkit.proxy.sync import SyncJob, SyncMode, SyncStatus
from rekorkit.proxy.tlogmirror import MirrorReply, TlogMirror

__all__ = [
    "MirrorReply",
    "NotInTreeError",
    "ProxyService",
    "RunningProxy",
    "Served",
    "SyncJob",
    "SyncMode",
    "SyncStatus",
    "TlogMirror",
    "create_app",
    "create_mirror_app",
    "serve_in_thread",
    "start_proxy",
    "start_proxy_process",
]
