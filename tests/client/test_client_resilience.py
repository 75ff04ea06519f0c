"""Retry policy, circuit breaker and failover, driven by a fake clock."""

from __future__ import annotations

import anyio
import pytest
from rekorkit.client.resilience import (
    CircuitBreaker,
    Failover,
    RetryPolicy,
    Timeouts,
    is_retryable,
)
from rekorkit.errors import (
    CircuitOpenError,
    NotFoundError,
    RateLimitedError,
    RekorAPIError,
    RequestTimeoutError,
    RetryExhaustedError,
    TransportError,
    UnavailableError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def policy(clock: FakeClock, **kw: object) -> RetryPolicy:
    return RetryPolicy(
        clock=clock,
        sleep=clock.sleep,
        async_sleep=clock.asleep,
        rng=lambda: 1.0,  # the jitter's upper bound, so waits are predictable
        **kw,  # type: ignore[arg-type]
    )


def failing(errors: list[BaseException], result: str = "ok"):  # type: ignore[no-untyped-def]
    calls = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def test_retryable_classification() -> None:
    assert is_retryable(TransportError("x"))
    assert is_retryable(RequestTimeoutError("x"))
    assert is_retryable(UnavailableError("x", status=503))
    assert is_retryable(RateLimitedError("x", status=429))
    assert not is_retryable(NotFoundError("x", status=404))
    assert not is_retryable(RekorAPIError("forbidden", status=403))
    assert not is_retryable(RekorAPIError("bad", status=400))
    assert not is_retryable(ValueError("x"))


def test_exponential_backoff_until_success() -> None:
    clock = FakeClock()
    fn = failing([TransportError("a"), UnavailableError("b", status=502)])
    assert policy(clock, base_delay=1.0).call(fn) == "ok"
    assert clock.sleeps == [1.0, 2.0]
    assert len(fn.calls) == 3


def test_full_jitter_is_bounded_by_cap() -> None:
    p = RetryPolicy(base_delay=1.0, max_delay=5.0, rng=lambda: 0.5)
    assert p.backoff(0) == 0.5
    assert p.backoff(2) == 2.0
    assert p.backoff(10) == 2.5  # capped at max_delay 5.0 * 0.5


def test_retry_after_is_honoured_over_jitter() -> None:
    clock = FakeClock()
    fn = failing([RateLimitedError("slow down", status=429, retry_after=7.0)])
    assert policy(clock, base_delay=0.1).call(fn) == "ok"
    assert clock.sleeps == [7.0]


def test_no_retry_on_4xx() -> None:
    clock = FakeClock()
    err = RekorAPIError("forbidden", status=403)
    fn = failing([err])
    with pytest.raises(RekorAPIError) as info:
        policy(clock).call(fn)
    assert info.value is err
    assert clock.sleeps == []


def test_attempt_cap_carries_every_error_last_first() -> None:
    clock = FakeClock()
    errs: list[BaseException] = [TransportError(f"e{i}") for i in range(3)]
    fn = failing(list(errs))
    with pytest.raises(RetryExhaustedError) as info:
        policy(clock, max_attempts=3).call(fn)
    assert [str(e) for e in info.value.attempts] == ["e2", "e1", "e0"]
    assert "e2" in str(info.value)
    assert info.value.__cause__ is errs[2]


def test_total_budget_stops_retries() -> None:
    clock = FakeClock()
    fn = failing([UnavailableError("x", status=503)] * 10)
    with pytest.raises(RetryExhaustedError) as info:
        policy(clock, base_delay=4.0, max_attempts=10, total_budget=10.0).call(fn)
    # waits 4, then 8 would overrun 10 s
    assert clock.sleeps == [4.0]
    assert len(info.value.attempts) == 2


def test_retry_after_beyond_limit_gives_up() -> None:
    clock = FakeClock()
    fn = failing([RateLimitedError("later", status=429, retry_after=3600.0)])
    with pytest.raises(RetryExhaustedError):
        policy(clock, max_retry_after=60.0).call(fn)
    assert clock.sleeps == []


def test_permanent_error_after_transient_is_raised_itself() -> None:
    clock = FakeClock()
    final = RekorAPIError("bad request", status=400)
    fn = failing([TransportError("t"), final])
    with pytest.raises(RekorAPIError) as info:
        policy(clock).call(fn)
    assert info.value is final
    assert any("after 1 failed attempt" in n for n in info.value.__notes__)


def test_async_retry_twin() -> None:
    clock = FakeClock()
    errs = [TransportError("a"), TransportError("b")]

    async def fn() -> str:
        if errs:
            raise errs.pop(0)
        return "done"

    async def main() -> str:
        return await policy(clock, base_delay=0.5).acall(fn)

    assert anyio.run(main) == "done"
    assert clock.sleeps == [0.5, 1.0]


def test_invalid_policy_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_timeouts_objects() -> None:
    t = Timeouts.for_v2_writes()
    assert t.read >= 20.0
    assert t.connect < t.read
    h = t.to_httpx()
    assert h.read == t.read and h.connect == t.connect


def test_breaker_opens_then_half_open_probe() -> None:
    clock = FakeClock()
    b = CircuitBreaker("http://a", failure_threshold=2, reset_timeout=10.0, clock=clock)
    b.acquire()
    b.record(TransportError("x"))
    assert b.state == "closed"
    b.acquire()
    b.record(TransportError("x"))
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.retry_after == pytest.approx(10.0)
    clock.now += 10.0
    assert b.state == "half-open"
    b.acquire()  # the single probe
    with pytest.raises(CircuitOpenError):
        b.acquire()
    b.record(None)
    assert b.state == "closed"


def test_breaker_failed_probe_reopens() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, clock=clock)
    b.acquire()
    b.record(UnavailableError("x", status=503))
    clock.now += 5.0
    b.acquire()
    b.record(TransportError("still down"))
    assert b.state == "open"


def test_breaker_ignores_permanent_4xx() -> None:
    b = CircuitBreaker(failure_threshold=1)
    b.acquire()
    b.record(NotFoundError("nope", status=404))
    assert b.state == "closed"


def test_breaker_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


def test_failover_moves_to_next_backend_and_back() -> None:
    clock = FakeClock()
    f = Failover(["http://a", "http://b"], failure_threshold=1, reset_timeout=30.0, clock=clock)
    assert f.choose() == "http://a"
    f.record("http://a", TransportError("down"))
    assert f.choose() == "http://b"
    f.record("http://b", None)
    assert f.choose() == "http://b"  # a is still open
    f.record("http://b", None)
    clock.now += 30.0
    assert f.choose() == "http://a"  # half-open probe on the preferred backend
    f.record("http://a", None)
    assert f.breakers["http://a"].state == "closed"


def test_failover_all_open_raises_with_wait() -> None:
    clock = FakeClock()
    f = Failover(["http://a"], failure_threshold=1, reset_timeout=8.0, clock=clock)
    f.choose()
    f.record("http://a", TransportError("down"))
    clock.now += 3.0
    with pytest.raises(CircuitOpenError) as info:
        f.choose()
    assert info.value.retry_after == pytest.approx(5.0)


def test_failover_needs_backends() -> None:
    with pytest.raises(ValueError):
        Failover([])
