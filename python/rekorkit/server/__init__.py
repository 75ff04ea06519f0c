"""A local Rekor-compatible transparency log: v1 and v2 APIs over C2SP tiles.

Run it with ``rekorkit serve --data DIR`` or, in tests, with
:func:`rekorkit.testing.start_server`. Building blocks:

* :class:`TransparencyLog` (``log``): tiles, bundles, index and checkpoints on disk;
* :class:`Integrator` (``integrator``): batched integration behind the APIs;
* :class:`LogService` (``service``): what the routes serve;
* :func:`create_app` (``app``): the ASGI application;
* :func:`seed_log` (``seed``): bulk preload of synthetic signed entries;
* :class:`FaultRule` (``faults``) and :func:`build_fork` (``fork``): a log that
  misbehaves on purpose.
"""

from rekorkit.server.app import create_app
from rekorkit.server.faults import FaultController, FaultRule
from rekorkit.server.fork import ForkView, build_fork
from rekorkit.server.integrator import Integrator, Receipt
from rekorkit.server.log import Integrated, LogState, TransparencyLog
from rekorkit.server.seed import SeedStats, SyntheticEntries, seed_log
from rekorkit.server.service import LogService, ServerOptions, open_service
from rekorkit.server.storage import TileStore

__all__ = [
    "FaultController",
    "FaultRule",
    "ForkView",
    "Integrated",
    "Integrator",
    "LogService",
    "LogState",
    "Receipt",
    "SeedStats",
    "ServerOptions",
    "SyntheticEntries",
    "TileStore",
    "TransparencyLog",
    "build_fork",
    "create_app",
    "open_service",
    "seed_log",
]
