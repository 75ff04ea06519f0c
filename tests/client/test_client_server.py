"""The clients against the real local log server on 127.0.0.1, under injected faults.

Normal operation (v1 and v2, sync and async) and every fault the server can
inject: 429 with Retry-After, 500/502/503 bursts, latency beyond the timeout,
dropped connections, truncated bodies, a read-only log and a forked log.
Sleeps are injected so retries cost no wall time, except latency faults,
which are real by nature and kept short.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from client_fakes import proposed_hashedrekord, v2_request
from rekorkit.client import (
    AsyncTileReader,
    Failover,
    RetryPolicy,
    TileReader,
    Timeouts,
)
from rekorkit.client.v1 import AsyncRekorV1Client, RekorV1Client
from rekorkit.client.v2 import AsyncRekorV2Client, RekorV2Client
from rekorkit.errors import (
    DivergenceError,
    NotFoundError,
    RateLimitedError,
    RekorAPIError,
    RequestTimeoutError,
    RetryExhaustedError,
    TransportError,
    UnavailableError,
)
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, start_server
from rekorkit.trust import log_from_key


class Sleeps:
    """An injectable sleep that records waits and advances a fake clock instead."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def __call__(self, s: float) -> None:
        self.waits.append(s)
        self.now += s

    async def asleep(self, s: float) -> None:
        self(s)


def policy(sleeps: Sleeps, **kw: Any) -> RetryPolicy:
    kw.setdefault("max_attempts", 6)
    kw.setdefault("base_delay", 0.01)
    return RetryPolicy(sleep=sleeps, async_sleep=sleeps.asleep, clock=sleeps.clock, **kw)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalRekor]:
    with start_server() as srv:
        yield srv


@pytest.fixture
def srv(server: LocalRekor) -> Iterator[LocalRekor]:
    server.clear_faults()
    yield server
    server.clear_faults()


def v1(srv: LocalRekor, **kw: Any) -> RekorV1Client:
    kw.setdefault("retry", policy(Sleeps()))
    return RekorV1Client(
        srv.url,
        log=log_from_key(srv.url, srv.public_key_pem),
        verifier=parse_verifier_key(srv.v1_vkey),
        **kw,
    )


def av1(srv: LocalRekor, **kw: Any) -> AsyncRekorV1Client:
    kw.setdefault("retry", policy(Sleeps()))
    return AsyncRekorV1Client(
        srv.url,
        log=log_from_key(srv.url, srv.public_key_pem),
        verifier=parse_verifier_key(srv.v1_vkey),
        **kw,
    )


def v2(srv: LocalRekor, **kw: Any) -> RekorV2Client:
    kw.setdefault("retry", policy(Sleeps()))
    return RekorV2Client(
        srv.url,
        public_key=srv.checkpoint_public_key_pem,
        verifier=parse_verifier_key(srv.checkpoint_vkey),
        **kw,
    )


def av2(srv: LocalRekor, **kw: Any) -> AsyncRekorV2Client:
    kw.setdefault("retry", policy(Sleeps()))
    return AsyncRekorV2Client(
        srv.url,
        public_key=srv.checkpoint_public_key_pem,
        verifier=parse_verifier_key(srv.checkpoint_vkey),
        **kw,
    )


_counter = iter(range(10_000, 1_000_000))


def fresh() -> int:
    return next(_counter)


# ---------------------------------------------------------------- normal operation


def test_v1_round_trip(srv: LocalRekor) -> None:
    with v1(srv) as c:
        n = fresh()
        e = c.submit(proposed_hashedrekord(n))
        assert c.get_entry(e.log_index).uuid == e.uuid
        assert c.get_entry(uuid=e.entry_id).log_index == e.log_index
        assert c.submit(proposed_hashedrekord(n)).uuid == e.uuid  # 409 -> same entry
        assert [x.uuid for x in c.search(entries=[proposed_hashedrekord(n)])] == [e.uuid]
        info = c.log_info()
        assert info.total_size >= e.log_index + 1
        assert c.public_key().startswith(b"-----BEGIN PUBLIC KEY-----")
        c.submit(proposed_hashedrekord(fresh()))
        c.log_info()  # grew since: consistency proven through /api/v1/log/proof
        assert c.tracker.latest(srv.v1_origin) is not None


def test_v2_round_trip(srv: LocalRekor) -> None:
    with v2(srv) as c:
        n = fresh()
        e = c.submit(v2_request(n))
        assert c.flows.log is not None and c.flows.log.log_id == srv.v2_log_id
        assert e.log_id == srv.v2_log_id
        again = c.submit(v2_request(n))  # 409 -> x-log-index -> tiles
        assert again.log_index == e.log_index
        assert c.get_entry(e.log_index).canonicalized_body == e.canonicalized_body
        before = c.checkpoint().size
        c.submit(v2_request(fresh()))
        assert c.checkpoint().size == before + 1
    with TileReader(srv.url) as tiles:
        assert tiles.checkpoint().startswith(srv.origin.encode())
        assert len(tiles.tile(0, 0, 1)) == 32


def test_async_clients(srv: LocalRekor) -> None:
    async def main() -> None:
        async with av1(srv) as c1, av2(srv) as c2, AsyncTileReader(srv.url) as tiles:
            subs = await c1.submit_many([proposed_hashedrekord(fresh()) for _ in range(20)])
            got = await c1.get_entries([e.log_index for e in subs])
            assert [e.uuid for e in got] == [e.uuid for e in subs]
            subs2 = await c2.submit_many([v2_request(fresh()) for _ in range(20)])
            assert len({e.log_index for e in subs2}) == 20
            cp = await c2.checkpoint()
            assert cp.size >= 20
            first = await tiles.tiles([(0, 0, min(cp.size, 256))])
            assert len(first[0]) == 32 * min(cp.size, 256)

    anyio.run(main)


# ---------------------------------------------------------------- faults


def test_429_with_retry_after(srv: LocalRekor) -> None:
    sleeps = Sleeps()
    srv.set_faults({"action": "status", "status": 429, "count": 2, "retry_after": 3})
    with v1(srv, retry=policy(sleeps)) as c:
        assert c.submit(proposed_hashedrekord(fresh())).log_index >= 0
    assert sleeps.waits[:2] == [3.0, 3.0]


def test_429_beyond_patience_reports_rate_limit(srv: LocalRekor) -> None:
    srv.set_faults({"action": "status", "status": 429, "retry_after": 3})
    with (
        v2(srv, retry=policy(Sleeps(), max_attempts=3)) as c,
        pytest.raises(RetryExhaustedError) as info,
    ):
        c.submit(v2_request(fresh()))
    assert all(isinstance(e, RateLimitedError) for e in info.value.attempts)
    assert info.value.attempts[0].retry_after == 3.0
    assert info.value.status == 429


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_bursts(srv: LocalRekor, status: int) -> None:
    sleeps = Sleeps()
    srv.set_faults({"action": "status", "status": status, "count": 3})
    with v2(srv, retry=policy(sleeps)) as c:
        assert c.submit(v2_request(fresh())).log_index >= 0
    assert len(sleeps.waits) == 3


def test_5xx_without_end_exhausts_with_every_error(srv: LocalRekor) -> None:
    srv.set_faults({"action": "status", "status": 502})
    with (
        v1(srv, retry=policy(Sleeps(), max_attempts=4)) as c,
        pytest.raises(RetryExhaustedError) as info,
    ):
        c.log_info()
    assert len(info.value.attempts) == 4
    assert all(isinstance(e, UnavailableError) and e.status == 502 for e in info.value.attempts)


def test_latency_beyond_timeout(srv: LocalRekor) -> None:
    srv.set_faults({"action": "latency", "latency": 1.0, "count": 1, "path_prefix": "/api/v1/log"})
    timeout = Timeouts(connect=1.0, read=0.3, write=1.0, pool=1.0)
    sleeps = Sleeps()
    with v1(srv, timeout=timeout, retry=policy(sleeps)) as c:
        c.log_info()  # first attempt times out, the retry succeeds
    assert len(sleeps.waits) == 1
    srv.set_faults({"action": "latency", "latency": 1.0, "path_prefix": "/api/v1/log"})
    with (
        v1(srv, timeout=timeout, retry=policy(Sleeps(), max_attempts=2)) as c,
        pytest.raises(RetryExhaustedError) as info,
    ):
        c.log_info()
    assert all(isinstance(e, RequestTimeoutError) for e in info.value.attempts)


def test_dropped_connections(srv: LocalRekor) -> None:
    sleeps = Sleeps()
    srv.set_faults({"action": "drop", "count": 2})
    with v2(srv, retry=policy(sleeps)) as c:
        assert c.submit(v2_request(fresh())).log_index >= 0
    assert len(sleeps.waits) == 2
    srv.set_faults({"action": "drop"})
    with (
        v1(srv, retry=policy(Sleeps(), max_attempts=2)) as c,
        pytest.raises(RetryExhaustedError) as info,
    ):
        c.get_entry(0)
    assert all(isinstance(e, TransportError) for e in info.value.attempts)


def test_truncated_bodies(srv: LocalRekor) -> None:
    sleeps = Sleeps()
    with v1(srv, retry=policy(sleeps)) as c:
        c.submit(proposed_hashedrekord(fresh()))
        srv.set_faults({"action": "truncate", "count": 2})
        assert c.get_entry(0).log_index == 0
    assert len(sleeps.waits) == 2
    srv.set_faults({"action": "truncate", "count": 2, "path_prefix": "/tile/"})
    tile_sleeps = Sleeps()
    with TileReader(srv.url, retry=policy(tile_sleeps)) as tiles:
        assert len(tiles.tile(0, 0, 1)) == 32
    assert len(tile_sleeps.waits) == 2


def test_read_only_log() -> None:
    with start_server(read_only=True) as ro:
        with v2(ro) as c, pytest.raises(RekorAPIError) as info:
            c.submit(v2_request(fresh()))
        assert info.value.status == 405 and not isinstance(info.value, RetryExhaustedError)
        with v1(ro) as c1, pytest.raises(RekorAPIError) as info1:
            c1.submit(proposed_hashedrekord(fresh()))
        assert info1.value.status in (405, 501)


def test_forked_log_is_divergence(srv: LocalRekor) -> None:
    with v2(srv) as c2, v1(srv) as c1:
        c2.submit(v2_request(fresh()))
        c1.submit(proposed_hashedrekord(fresh()))
        size = c2.checkpoint().size
        c1.log_info()
        srv.fork(at=size - 1, extra=3)
        try:
            with pytest.raises(DivergenceError) as info:
                c2.checkpoint()
            assert info.value.evidence["old_size"] == size
            with pytest.raises(DivergenceError):
                c1.log_info()
        finally:
            srv.unfork()


def test_async_clients_under_faults(srv: LocalRekor) -> None:
    sleeps = Sleeps()

    async def main() -> None:
        # breakers on the same fake clock: five failures in a row open one, and
        # the policy then waits (in fake time) for its half-open probe
        f1 = Failover([srv.url], clock=sleeps.clock)
        f2 = Failover([srv.url], clock=sleeps.clock)
        async with (
            av1(srv, retry=policy(sleeps, max_attempts=10), failover=f1) as c1,
            av2(srv, retry=policy(sleeps, max_attempts=10), failover=f2) as c2,
        ):
            srv.set_faults(
                {"action": "status", "status": 503, "count": 2, "retry_after": 1},
                {"action": "drop", "count": 1},
                {"action": "truncate", "count": 1},
                {"action": "status", "status": 429, "count": 1, "retry_after": 2},
            )
            e1 = await c1.submit(proposed_hashedrekord(fresh()))
            e2 = await c2.submit(v2_request(fresh()))
            assert (await c1.get_entry(e1.log_index)).uuid == e1.uuid
            assert (await c2.get_entry(e2.log_index)).canonicalized_body == e2.canonicalized_body

    anyio.run(main)
    assert len(sleeps.waits) >= 5
    assert 2.0 in sleeps.waits and 1.0 in sleeps.waits


def test_async_tile_batches_against_the_log(srv: LocalRekor) -> None:
    with v2(srv) as c:
        for _ in range(3):
            c.submit(v2_request(fresh()))
        size = c.checkpoint().size
    width = min(size, 256)
    with TileReader(srv.url) as sync_reader:
        want_tile = sync_reader.tile(0, 0, width)
        want_bundle = sync_reader.entry_bundle(0, width)

    async def main() -> None:
        async with AsyncTileReader(srv.url, max_concurrency=4) as r:
            assert await r.tiles([(0, 0, width)] * 12) == [want_tile] * 12
            assert await r.entry_bundles([(0, width)] * 5) == [want_bundle] * 5
            with pytest.raises(NotFoundError):
                await r.tiles([(0, 0, width), (0, 999_999, 256)])

    anyio.run(main)
