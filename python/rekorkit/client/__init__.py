"""Rekor clients: v1 REST, v2 writes, tile reads, with retries and verification.

Every entry, proof and checkpoint a client returns has been verified against
the configured log key, and every checkpoint is proven consistent with the
latest one the client trusts (``DivergenceError`` otherwise)::

    from rekorkit.client import RekorV1Client, RekorV2Client, PRESETS, VerifyOptions

    with RekorV1Client(PRESETS["production"]) as rekor:        # key from the preset
        entry = rekor.get_entry(79605083)                      # verified, or an error
        entries = rekor.get_entries(range(1000, 1100))         # 10 per request
        info = rekor.log_info()                                 # incl. inactive shards

    with RekorV2Client("http://127.0.0.1:3000", public_key=pem, verifier=vkey) as log:
        tle = log.submit_dsse(envelope, verifiers=[cert])       # 409 -> existing entry
        cp = log.checkpoint()                                   # consistency from tiles

    relaxed = VerifyOptions().without("signed_entry_timestamp")  # opt out by name

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
