"""The shared request core: error mapping, error bodies, Retry-After, size caps."""

from __future__ import annotations

import email.utils

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rekorkit.client._http import (
    RequestSpec,
    build_request,
    error_from_response,
    join_url,
    parse_error_body,
    parse_retry_after,
    request_url,
    translate_errors,
)
from rekorkit.client._session import SessionConfig, SyncSession
from rekorkit.client.resilience import RetryPolicy
from rekorkit.errors import (
    ConflictError,
    MalformedError,
    NotFoundError,
    RateLimitedError,
    RekorAPIError,
    RequestTimeoutError,
    RetryExhaustedError,
    TransportError,
    UnavailableError,
)

H = httpx.Headers


def test_build_request_joins_and_serialises() -> None:
    spec = RequestSpec("POST", "/api/v1/log/entries", json_body={"a": 1}, params={"x": 2})
    req = build_request("http://h:1/base/", spec)
    assert str(req.url) == "http://h:1/base/api/v1/log/entries?x=2"
    assert req.headers["content-type"] == "application/json"
    assert req.content == b'{"a":1}'


def test_v1_error_body() -> None:
    e = parse_error_body(
        400, H({"content-type": "application/json"}), b'{"code":400,"message":"bad"}'
    )
    assert (e.code, e.message) == (400, "bad")


def test_v2_error_body_with_details() -> None:
    body = b'{"code":3,"message":"invalid hashedrekord request","details":[{"x":1}]}'
    e = parse_error_body(400, H({"content-type": "application/json"}), body)
    assert e.code == 3 and e.message == "invalid hashedrekord request" and len(e.details) == 1


def test_html_error_body_from_proxy() -> None:
    body = b"<html><head><title>429 Too Many Requests</title></head><body>nginx</body></html>"
    e = parse_error_body(429, H({"content-type": "text/html"}), body)
    assert e.code is None
    assert "HTML" in e.message and "429 Too Many Requests" in e.message


def test_empty_404_body() -> None:
    e = parse_error_body(404, H(), b"")
    assert e.message == "Not Found"


def test_garbage_json_error_body_does_not_crash() -> None:
    e = parse_error_body(500, H({"content-type": "application/json"}), b'{"code": "x", "mess')
    assert e.code is None and e.message


@given(st.binary(max_size=300), st.integers(400, 599))
def test_error_body_parser_never_fails(body: bytes, status: int) -> None:
    err = error_from_response(status, H({"content-type": "application/json"}), body, "http://x")
    assert isinstance(err, RekorAPIError)
    assert err.status == status


def test_status_mapping() -> None:
    u = "http://x/"
    assert isinstance(error_from_response(404, H(), b"", u), NotFoundError)
    c = error_from_response(
        409, H({"location": "/api/v1/log/entries/ab", "x-log-index": "12"}), b"", u
    )
    assert (
        isinstance(c, ConflictError)
        and c.location == "/api/v1/log/entries/ab"
        and c.log_index == 12
    )
    r = error_from_response(429, H({"retry-after": "3"}), b"<html></html>", u)
    assert isinstance(r, RateLimitedError) and r.retry_after == 3.0
    assert isinstance(error_from_response(502, H(), b"", u), UnavailableError)
    assert not isinstance(error_from_response(501, H(), b"", u), UnavailableError)
    assert isinstance(error_from_response(408, H(), b"", u), RequestTimeoutError)
    assert type(error_from_response(403, H(), b"", u)) is RekorAPIError


def test_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("5") == 5.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=lambda: now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_translate_errors_chains_cause() -> None:
    req = httpx.Request("GET", "http://x/")
    for exc, cls in [
        (httpx.ConnectError("refused", request=req), TransportError),
        (httpx.ReadTimeout("slow", request=req), RequestTimeoutError),
        (httpx.RemoteProtocolError("peer closed", request=req), TransportError),
    ]:
        with pytest.raises(cls) as info, translate_errors("http://x/"):
            raise exc
        assert info.value.__cause__ is exc


def session(handler, **kw) -> SyncSession:  # type: ignore[no-untyped-def]
    kw.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None))
    config = SessionConfig(**kw)
    return SyncSession("http://log.test", config, transport=httpx.MockTransport(handler))


def test_wrong_content_type_is_malformed() -> None:
    s = session(lambda r: httpx.Response(200, text="{}", headers={"content-type": "text/html"}))
    with pytest.raises(MalformedError, match="content type"):
        s.request(RequestSpec("GET", "api/v1/log"))


def test_body_over_cap_is_refused() -> None:
    s = session(lambda r: httpx.Response(200, content=b"x" * 5000))
    with pytest.raises(MalformedError, match="limit"):
        s.request(RequestSpec("GET", "tile/0/000", content="bytes", max_bytes=4096))


def test_streamed_body_over_cap_is_refused() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 3000, b"y" * 3000]))

    with pytest.raises(MalformedError, match="limit"):
        session(handler).request(RequestSpec("GET", "t", content="bytes", max_bytes=4096))


def test_session_retries_then_succeeds() -> None:
    statuses = [503, 502]

    def handler(r: httpx.Request) -> httpx.Response:
        if statuses:
            return httpx.Response(statuses.pop(0), text="<html>busy</html>")
        return httpx.Response(200, json={"ok": True})

    assert session(handler).request(RequestSpec("GET", "api/v1/log")).json() == {"ok": True}


def test_session_exhaustion_carries_attempts() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=r)

    with pytest.raises(RetryExhaustedError) as info:
        session(handler).request(RequestSpec("GET", "api/v1/log"))
    assert len(info.value.attempts) == 3
    assert all(isinstance(e, TransportError) for e in info.value.attempts)


def test_session_fails_over_to_mirror() -> None:
    seen: list[str] = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append(r.url.host)
        if r.url.host == "a.test":
            raise httpx.ConnectError("down", request=r)
        return httpx.Response(200, content=b"ok")

    s = SyncSession(
        ["http://a.test", "http://b.test"],
        SessionConfig(retry=RetryPolicy(max_attempts=3, base_delay=0, sleep=lambda s: None)),
        transport=httpx.MockTransport(handler),
    )
    assert s.request(RequestSpec("GET", "checkpoint", content="text")).body == b"ok"
    assert seen == ["a.test", "b.test"]


def test_http2_without_h2_is_a_clear_error() -> None:
    import importlib.util

    if importlib.util.find_spec("h2") is not None:
        s = SyncSession("http://x", SessionConfig(http2=True))
        s.close()
        return
    from rekorkit.errors import RekorKitError

    with pytest.raises(RekorKitError, match="http2"):
        SyncSession("http://x", SessionConfig(http2=True))


def test_tls_verification_on_for_https_backends() -> None:
    import ssl

    secure = SyncSession(["http://mirror.test", "https://rekor.test"])
    transport = secure.transport_for("https://rekor.test")
    assert transport._pool._ssl_context.verify_mode == ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    secure.close()


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/",
        "http://log.example/prefix/",
        "https://log.example:8443/a/b",
        "http://[::1]:9/x",
        "http://log.example/p?view=eu",
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "tile/0/x001/234",
        "/checkpoint",
        "tile/entries/000.p/7",
        "a b/ü",
        "q?x=1",
        "",
        "/",
        "a/../b",
        "./x",
        "../x",
        "x/..",
        "tile/.",
        "a//b",
        ".well-known/x",
        "x../y",
    ],
)
def test_request_url_is_the_joined_url_parsed_whole(base: str, path: str) -> None:
    """The bulk-read shortcut (a plain path set on a parsed base) builds the URL httpx would."""
    fast, whole = request_url(base, path), httpx.URL(join_url(base, path))
    assert fast == whole
    assert (fast.raw_path, fast.host, fast.port, fast.scheme) == (
        whole.raw_path,
        whole.host,
        whole.port,
        whole.scheme,
    )
