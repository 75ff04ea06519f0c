"""Which API a log URL serves: a tlog-tiles checkpoint (v2) or the v1 REST API.

The probe is a read like any other: through a session, so it has the same size
caps, the one content coding, the header cap and the per-request deadline as
the reads that follow it (a hostile log cannot stall or flood the probe).
"""

from __future__ import annotations

import httpx

from rekorkit.client._http import RequestSpec
from rekorkit.client._session import AsyncSession, SessionConfig
from rekorkit.client.resilience import RetryPolicy, Timeouts
from rekorkit.client.tilereader import MAX_CHECKPOINT_BYTES
from rekorkit.errors import NotFoundError, RekorAPIError

__all__ = ["detect_api"]

# GET /api/v1/log is a small object (the Rekor OpenAPI, getLogInfo): a few shards' tree heads.
_MAX_LOG_INFO_BYTES = 1 << 20


async def detect_api(
    url: str,
    *,
    timeout: float | Timeouts | None = None,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """``"v2"`` if ``url`` serves ``/checkpoint`` (c2sp.org/tlog-tiles), ``"v1"`` if
    it serves ``/api/v1/log`` (the Rekor v1 OpenAPI).

    Raises:
        RekorAPIError: the log answered neither, or could not be read.
        MalformedError: an answer broke a size or encoding limit.
    """
    session = AsyncSession(url, SessionConfig(retry=retry, timeout=timeout), transport=transport)
    try:
        for api, spec in (
            (
                "v2",
                RequestSpec("GET", "checkpoint", content="text", max_bytes=MAX_CHECKPOINT_BYTES),
            ),
            ("v1", RequestSpec("GET", "api/v1/log", max_bytes=_MAX_LOG_INFO_BYTES)),
        ):
            try:
                await session.request(spec)
            except NotFoundError:
                continue
            except RekorAPIError as exc:
                if exc.status is None or exc.status >= 500 or exc.status in (408, 429):
                    raise
                continue  # another 4xx: not this API
            return api
    finally:
        await session.aclose()
    raise RekorAPIError(f"{url} serves neither /checkpoint nor /api/v1/log", url=url)
