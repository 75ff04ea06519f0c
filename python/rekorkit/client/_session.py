"""The I/O half of the clients: one sync and one async session over httpx.

A session owns the httpx client, the backend list with its breakers, the retry
policy and the timeouts. Its only job is ``request(spec) -> RawResponse``: pick
a backend, send, read at most ``spec.max_bytes``, record the outcome, retry.
Everything about what to send and how to read it lives in ``_http``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import httpx

from rekorkit.client._http import (
    RawResponse,
    RequestSpec,
    body_over_cap,
    build_request,
    check_declared_length,
    check_response,
    translate_errors,
)
from rekorkit.client._transport import AsyncHTTP1Transport
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.errors import RekorKitError


def _base_urls(base_url: str | Sequence[str]) -> list[str]:
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("at least one base URL is required")
    return [u.rstrip("/") for u in urls]


def _check_http2(http2: bool) -> None:
    if http2 and importlib.util.find_spec("h2") is None:
        raise RekorKitError(
            "http2=True needs the optional dependency: pip install 'rekorkit[http2]'"
        )


def _needs_tls(failover: Failover) -> bool:
    """Whether any backend is https; plain-http logs (loopback, private) skip the
    CA bundle, whose loading costs more than a hundred requests on loopback.
    Redirects are never followed, so a plain-http session never meets TLS."""
    return any(u.lower().startswith("https://") for u in failover.base_urls)


def _limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


# Requests go straight to the transport, not through httpx.Client: the client
# layer (cookies, auth, redirects, event hooks) is nothing a log API uses, and
# it costs about half of each request's CPU time. Timeouts travel in the
# request's "timeout" extension, as httpx.Client itself passes them.


class SyncSession:
    """Blocking requests with retries and failover over one httpx.Client."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | None = None,
        failover: Failover | None = None,
        http2: bool = False,
        max_connections: int = 16,
    ) -> None:
        _check_http2(http2)
        self.failover = failover or Failover(_base_urls(base_url))
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout = (timeout or Timeouts()).to_httpx().as_dict()
        self.transport = transport or httpx.HTTPTransport(
            limits=_limits(max_connections), http2=http2, verify=_needs_tls(self.failover)
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.transport.close()

    def _attempt(self, spec: RequestSpec) -> RawResponse:
        base = self.failover.choose()
        request = build_request(base, spec)
        request.extensions["timeout"] = self.timeout
        url = str(request.url)
        try:
            with translate_errors(url):
                response = self.transport.handle_request(request)
                response.request = request
                try:
                    check_declared_length(response, spec.max_bytes)
                    chunks: list[bytes] = []
                    total = 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > spec.max_bytes:
                            raise body_over_cap(url, spec.max_bytes)
                        chunks.append(chunk)
                finally:
                    response.close()
            body = b"".join(chunks)
            raw = check_response(spec, response.status_code, response.headers, body, url)
        except BaseException as exc:
            self.failover.record(base, exc)
            raise
        self.failover.record(base, None)
        return raw

    def request(self, spec: RequestSpec) -> RawResponse:
        """Send ``spec`` under the retry policy; return the checked response."""
        return self.retry.call(lambda: self._attempt(spec))


class AsyncSession:
    """Awaitable requests with retries and failover over one httpx.AsyncClient."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | None = None,
        failover: Failover | None = None,
        http2: bool = False,
        max_connections: int = 16,
    ) -> None:
        _check_http2(http2)
        self.failover = failover or Failover(_base_urls(base_url))
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout = (timeout or Timeouts()).to_httpx().as_dict()
        self.transport: httpx.AsyncBaseTransport
        if transport is not None:
            self.transport = transport
        elif http2:
            self.transport = httpx.AsyncHTTPTransport(
                limits=_limits(max_connections), http2=True, verify=_needs_tls(self.failover)
            )
        else:
            # See rekorkit.client._transport: httpx's own async pool costs more
            # client CPU per small request than the log spends answering it.
            self.transport = AsyncHTTP1Transport(
                max_connections=max_connections, verify=_needs_tls(self.failover)
            )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.transport.aclose()

    async def _attempt(self, spec: RequestSpec) -> RawResponse:
        base = self.failover.choose()
        request = build_request(base, spec)
        request.extensions["timeout"] = self.timeout
        url = str(request.url)
        try:
            with translate_errors(url):
                response = await self.transport.handle_async_request(request)
                response.request = request
                try:
                    check_declared_length(response, spec.max_bytes)
                    chunks: list[bytes] = []
                    total = 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > spec.max_bytes:
                            raise body_over_cap(url, spec.max_bytes)
                        chunks.append(chunk)
                finally:
                    await response.aclose()
            body = b"".join(chunks)
            raw = check_response(spec, response.status_code, response.headers, body, url)
        except BaseException as exc:
            self.failover.record(base, exc)
            raise
        self.failover.record(base, None)
        return raw

    async def request(self, spec: RequestSpec) -> RawResponse:
        """Send ``spec`` under the retry policy; return the checked response."""
        return await self.retry.acall(lambda: self._attempt(spec))
