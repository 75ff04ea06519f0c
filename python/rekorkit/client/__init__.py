"""Rekor clients: v1 REST, v2 writes, tile reads, with retries and verification.

Submodules: :mod:`~rekorkit.client.resilience` (retries, timeouts, breakers,
failover), :mod:`~rekorkit.client.tilereader` (tlog-tiles reads),
:mod:`~rekorkit.client.v1`, :mod:`~rekorkit.client.v2`,
:mod:`~rekorkit.client.backends`.
"""

from rekorkit.client.resilience import CircuitBreaker, Failover, RetryPolicy, Timeouts
from rekorkit.client.tilereader import AsyncTileReader, TileReader

__all__ = [
    "AsyncTileReader",
    "CircuitBreaker",
    "Failover",
    "RetryPolicy",
    "TileReader",
    "Timeouts",
]
