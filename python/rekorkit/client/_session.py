"""The I/O half of the clients: one sync and one async session over httpx.

A session owns an httpx client, the backend list with its breakers, the retry
policy and the timeouts. Its only job is ``request(spec) -> RawResponse``: pick
a backend, send, read at most ``spec.max_bytes`` decoded bytes before the
deadline, record the outcome, retry. What to send and how to read it lives in
``_http`` and ``_body``.

The environment is honoured as httpx honours it, because httpx decides:
``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` pick the
transport per origin (``trust_env``), and ``SSL_CERT_FILE``/``SSL_CERT_DIR``
pick the CA bundle. The session then hands each request straight to the
transport httpx chose: the client layer above it (cookies, auth, redirects,
event hooks) is nothing a log API uses and costs about half of each request's
CPU time. Plain-http origins with no proxy, in the async session, go to the
lean HTTP/1.1 transport (``_transport``), which wins there by measurement
(``benches/bench_client.py``); everything else (proxies, TLS, HTTP/2) goes to
httpx's own transports.

HTTP/2 is on by default (``http2="auto"``) wherever ``h2`` is installed: httpx
offers it over TLS by ALPN (RFC 9113 §3.2, RFC 7301) and a server that does not
choose it is spoken to in HTTP/1.1, so many reads share one connection where
the log's server allows it. Cleartext stays HTTP/1.1 (no prior knowledge).

Connect times are reported to :meth:`AsyncSession.watch_connects` callbacks
(the adaptive window counts a slow connect as congestion): from the lean
transport directly, from httpx's transports through httpcore's ``trace``
request extension.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import httpx

from rekorkit.client._body import araw_chunks, body_reader, raw_chunks
from rekorkit.client._http import (
    RawResponse,
    RequestSpec,
    build_request,
    check_response,
    translate_errors,
)
from rekorkit.client._transport import AsyncHTTP1Transport
from rekorkit.client.resilience import Failover, RetryPolicy, Timeouts
from rekorkit.errors import RekorKitError, RequestTimeoutError

__all__ = ["HTTP2", "AsyncSession", "SessionConfig", "SyncSession", "base_urls", "resolve_http2"]

HTTP2 = bool | Literal["auto"]
"""``True``/``False``, or ``"auto"``: HTTP/2 over TLS when ``h2`` is installed."""

_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def base_urls(base_url: str | Sequence[str]) -> list[str]:
    """One URL or mirrors as a list, trailing slashes removed."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("at least one base URL is required")
    return [u.rstrip("/") for u in urls]


def resolve_http2(http2: HTTP2) -> bool:
    """Whether to offer HTTP/2: ``"auto"`` when ``h2`` is installed.

    Raises:
        RekorKitError: ``http2=True`` without ``h2``.
    """
    installed = importlib.util.find_spec("h2") is not None
    if http2 == "auto":
        return installed
    if http2 and not installed:
        raise RekorKitError(
            "http2=True needs the optional dependency: pip install 'rekorkit[http2]'"
        )
    return bool(http2)


def _needs_tls(failover: Failover, trust_env: bool) -> bool:
    """Whether any backend (or an https proxy) needs TLS; plain-http logs
    (loopback, private) skip the CA bundle, whose loading costs more than a
    hundred requests on loopback. Redirects are never followed."""
    if any(u.lower().startswith("https://") for u in failover.base_urls):
        return True
    return trust_env and any(
        os.environ.get(v, "").lower().startswith("https://") for v in _PROXY_VARS
    )


def _limits(max_concurrency: int) -> httpx.Limits:
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    return httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)


def _deadline_error(url: str, seconds: float) -> RequestTimeoutError:
    return RequestTimeoutError(f"no complete response within the {seconds:g} s deadline", url=url)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionConfig:
    """How a session reaches its backends: one value, built once per client.

    Attributes:
        retry: the retry policy (default :class:`RetryPolicy`).
        failover: a prepared :class:`Failover` with its breakers (else one over the URLs).
        timeout: seconds per request (the deadline), or :class:`Timeouts`.
        http2: ``"auto"`` offers HTTP/2 over TLS when ``h2`` is installed.
        max_concurrency: the most requests in flight (the connection-pool size).
        trust_env: honour proxy and CA variables from the environment, as httpx does.
    """

    retry: RetryPolicy | None = None
    failover: Failover | None = None
    timeout: float | Timeouts | None = None
    http2: HTTP2 = "auto"
    max_concurrency: int = 16
    trust_env: bool = True


class _SessionBase:
    """What both sessions share: backends, retries, timeouts, and the per-request steps."""

    def __init__(self, base_url: str | Sequence[str], config: SessionConfig) -> None:
        self.failover = config.failover or Failover(base_urls(base_url))
        self.retry = config.retry if config.retry is not None else RetryPolicy()
        self.timeouts = Timeouts.of(config.timeout)
        self.max_concurrency = config.max_concurrency
        limits = _limits(config.max_concurrency)
        # What httpx.Client and httpx.AsyncClient are both built with.
        self.client_options: dict[str, Any] = {
            "trust_env": config.trust_env,
            "http2": resolve_http2(config.http2),
            "limits": limits,
            "verify": _needs_tls(self.failover, config.trust_env),
            "follow_redirects": False,
        }
        total = self.timeouts.total
        # No single wait may outlast the whole exchange's deadline.
        self._extension = {
            k: (v if total is None or v is None else min(v, total))
            for k, v in self.timeouts.to_httpx().as_dict().items()
        }

    def _prepare(self, spec: RequestSpec) -> tuple[str, httpx.Request]:
        base = self.failover.choose()
        request = build_request(base, spec)
        request.extensions["timeout"] = self._extension
        return base, request


class SyncSession(_SessionBase):
    """Blocking requests with retries and failover over an :class:`httpx.Client`.

    The deadline (``Timeouts.total``) is checked between reads, and no single
    read may wait longer than it; response headers are capped by httpx's
    HTTP/1.1 parser (h11, 100 KiB).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        config: SessionConfig = SessionConfig(),
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, config)
        self._client = httpx.Client(transport=transport, **self.client_options)
        self._routes: dict[str, httpx.BaseTransport] = {}

    def close(self) -> None:
        """Close the connection pools."""
        self._client.close()

    def transport_for(self, base: str) -> httpx.BaseTransport:
        """The transport requests to backend ``base`` go through."""
        return self._transport(base, httpx.URL(base))

    def _transport(self, base: str, url: httpx.URL) -> httpx.BaseTransport:
        route = self._routes.get(base)
        if route is None:
            # httpx's own choice: a proxy transport, or its pool (NO_PROXY honoured).
            route = self._routes[base] = self._client._transport_for_url(url)
        return route

    def _attempt(self, spec: RequestSpec) -> RawResponse:
        base, request = self._prepare(spec)
        url = str(request.url)
        total = self.timeouts.total
        deadline = None if total is None else time.monotonic() + total
        try:
            with translate_errors(url):
                response = self._transport(base, request.url).handle_request(request)
                try:
                    reader = body_reader(response, spec.max_bytes, url)
                    for chunk in raw_chunks(response):
                        reader.feed(chunk)
                        if deadline is not None and time.monotonic() > deadline:
                            raise _deadline_error(url, total or 0.0)
                finally:
                    response.close()
            raw = check_response(spec, response.status_code, response.headers, reader.finish(), url)
        except BaseException as exc:
            self.failover.record(base, exc)
            raise
        self.failover.record(base, None)
        return raw

    def request(self, spec: RequestSpec) -> RawResponse:
        """Send ``spec`` under the retry policy; return the checked response."""
        return self.retry.call(lambda: self._attempt(spec))


class AsyncSession(_SessionBase):
    """Awaitable requests with retries and failover over an :class:`httpx.AsyncClient`.

    The deadline (``Timeouts.total``) bounds each attempt whole: connecting,
    sending, the headers and the body.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        config: SessionConfig = SessionConfig(),
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, config)
        self._client = httpx.AsyncClient(transport=transport, **self.client_options)
        self._lean: AsyncHTTP1Transport | None = None
        self._explicit = transport is not None
        self._routes: dict[str, httpx.AsyncBaseTransport] = {}
        self._connect_watchers: list[Callable[[float], None]] = []

    def watch_connects(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(seconds)`` after each new connection's TCP handshake."""
        self._connect_watchers.append(callback)

    def _connected(self, seconds: float) -> None:
        for callback in self._connect_watchers:
            callback(seconds)

    def _connect_trace(self) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        """An httpcore ``trace`` extension timing this request's TCP connect, if it makes one."""
        started = 0.0

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal started
            if event == "connection.connect_tcp.started":
                started = time.monotonic()
            elif event == "connection.connect_tcp.complete":
                self._connected(time.monotonic() - started)

        return trace

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._client.aclose()
        if self._lean is not None:
            await self._lean.aclose()

    def transport_for(self, base: str) -> httpx.AsyncBaseTransport:
        """The transport requests to backend ``base`` go through."""
        return self._transport(base, httpx.URL(base))

    def _transport(self, base: str, url: httpx.URL) -> httpx.AsyncBaseTransport:
        route = self._routes.get(base)
        if route is None:
            chosen: Any = self._client._transport_for_url(url)
            direct = chosen is self._client._transport
            if direct and not self._explicit and url.scheme == "http":
                # No proxy, no TLS (so no HTTP/2): the lean transport (see module docstring).
                if self._lean is None:
                    self._lean = AsyncHTTP1Transport(
                        max_connections=self.max_concurrency,
                        verify=False,
                        on_connect=self._connected,
                    )
                chosen = self._lean
            route = self._routes[base] = chosen
        return route

    async def _exchange(self, base: str, spec: RequestSpec, request: httpx.Request) -> RawResponse:
        url = str(request.url)
        transport = self._transport(base, request.url)
        if self._connect_watchers and transport is not self._lean:
            request.extensions["trace"] = self._connect_trace()
        with translate_errors(url):
            response = await transport.handle_async_request(request)
            try:
                reader = body_reader(response, spec.max_bytes, url)
                async for chunk in araw_chunks(response):
                    reader.feed(chunk)
            finally:
                await response.aclose()
        return check_response(spec, response.status_code, response.headers, reader.finish(), url)

    async def _attempt(self, spec: RequestSpec) -> RawResponse:
        base, request = self._prepare(spec)
        total = self.timeouts.total
        try:
            try:
                async with asyncio.timeout(total):
                    raw = await self._exchange(base, spec, request)
            except TimeoutError as exc:
                raise _deadline_error(str(request.url), total or 0.0) from exc
        except BaseException as exc:
            self.failover.record(base, exc)
            raise
        self.failover.record(base, None)
        return raw

    async def request(self, spec: RequestSpec) -> RawResponse:
        """Send ``spec`` under the retry policy; return the checked response."""
        return await self.retry.acall(lambda: self._attempt(spec))
