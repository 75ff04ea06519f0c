"""Rekor clients: v1 REST, v2 writes, tile reads, with retries and verification.

Submodules: :mod:`~rekorkit.client.resilience` (retries, timeouts, breakers,
failover), :mod:`~rekorkit.client.tilereader` (tlog-tiles reads),
:mod:`~rekorkit.client.v1`, :mod:`~rekorkit.client.v2`,
:mod:`~rekorkit.client.backends`, :mod:`~rekorkit.client.verification`,
:mod:`~rekorkit.client.tracking`.
"""

from rekorkit.client.backends import PRESETS, Backend, resolve_backends
from rekorkit.client.resilience import CircuitBreaker, Failover, RetryPolicy, Timeouts
from rekorkit.client.tilereader import AsyncTileReader, TileReader
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.client.v1 import AsyncRekorV1Client, LogInfo, RekorV1Client, ShardInfo
from rekorkit.client.v2 import AsyncRekorV2Client, RekorV2Client
from rekorkit.client.verification import VerifyOptions

__all__ = [
    "PRESETS",
    "AsyncRekorV1Client",
    "AsyncRekorV2Client",
    "AsyncTileReader",
    "Backend",
    "CheckpointTracker",
    "CircuitBreaker",
    "Failover",
    "LogInfo",
    "RekorV1Client",
    "RekorV2Client",
    "RetryPolicy",
    "ShardInfo",
    "TileReader",
    "Timeouts",
    "VerifyOptions",
    "resolve_backends",
]
