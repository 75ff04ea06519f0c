"""The adaptive in-flight window against a simulated link, and its asyncio gate.

The link is a discrete-event model: requests travel ``delay`` seconds each way
and queue at a server that answers ``capacity`` requests per second, one at a
time; a server with a queue limit answers 503 at once when its queue is full.
The window must find the best fixed window's throughput on a 50 ms link
without being told, keep the queue (latency) bounded, and back off under
overload.
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass
from typing import Any

import pytest
from rekorkit.client.adaptive import AdaptiveWindow, WindowGate, WindowPolicy
from rekorkit.errors import NotFoundError, UnavailableError


@dataclass
class Run:
    completed: int
    rejected: int
    late_rate: float  # completions per second over the second half of the run
    late_latency: float  # mean latency over the second half
    limits: list[int]  # the window after each completion


def simulate(
    window: AdaptiveWindow | int,
    *,
    delay: float = 0.025,
    capacity: float = 2000.0,
    queue_limit: int | None = None,
    duration: float = 10.0,
    capacity_after: tuple[float, float] | None = None,
) -> Run:
    """Keep ``window`` requests in flight over the link for ``duration`` simulated seconds."""
    events: list[tuple[float, int, float, bool]] = []  # (done at, seq, started, rejected)
    seq = in_flight = completed = rejected = late = 0
    late_latency = 0.0
    server_free = 0.0
    backlog: list[float] = []  # finish times of requests queued at the server
    limits: list[int] = []
    now = 0.0

    def limit() -> int:
        return window if isinstance(window, int) else window.limit

    def rate_at(t: float) -> float:
        if capacity_after is not None and t >= capacity_after[0]:
            return capacity_after[1]
        return capacity

    def send(t: float) -> None:
        nonlocal seq, in_flight, server_free
        arrive = t + delay
        while backlog and backlog[0] <= arrive:
            heapq.heappop(backlog)
        seq += 1
        in_flight += 1
        if queue_limit is not None and len(backlog) >= queue_limit:
            heapq.heappush(events, (arrive + delay, seq, t, True))
            return
        server_free = max(server_free, arrive) + 1.0 / rate_at(arrive)
        heapq.heappush(backlog, server_free)
        heapq.heappush(events, (server_free + delay, seq, t, False))

    for _ in range(limit()):
        send(now)
    steps = 0
    while events and steps < 2_000_000:
        steps += 1
        now, _, started, was_rejected = heapq.heappop(events)
        if now > duration:
            break
        in_flight -= 1
        if was_rejected:
            rejected += 1
        else:
            completed += 1
            if now > duration / 2:
                late += 1
                late_latency += now - started
        if isinstance(window, AdaptiveWindow):
            window.on_sample(now - started, now, congested=was_rejected)
        limits.append(limit())
        while in_flight < limit():
            send(now)
    return Run(completed, rejected, late / (duration / 2), late_latency / max(late, 1), limits)


def best_fixed(**link: Any) -> float:
    return max(simulate(w, **link).late_rate for w in (1, 2, 4, 8, 16, 32, 64, 128, 256))


def test_converges_near_the_best_fixed_window_on_a_50ms_link() -> None:
    link: dict[str, Any] = {
        "delay": 0.025,
        "capacity": 4000.0,
    }  # bandwidth-delay product: 200 requests
    best = best_fixed(**link)
    assert best == pytest.approx(4000, rel=0.02)
    window = AdaptiveWindow(WindowPolicy(ceiling=512))
    run = simulate(window, **link)
    assert run.late_rate >= 0.8 * best, (run.late_rate, best, run.limits[-20:])
    # ... without parking at the ceiling: the queue it keeps is bounded by
    # the latency target (twice the base round trip, plus 5 ms).
    assert run.late_latency < 0.05 * 2.3, run.late_latency
    late = run.limits[len(run.limits) // 2 :]
    assert sum(late) / len(late) < 0.9 * 512


def test_small_pipe_keeps_the_window_small() -> None:
    """A 200 requests/s server 50 ms away needs about 10 in flight, not the ceiling."""
    link: dict[str, Any] = {"delay": 0.025, "capacity": 200.0}
    best = best_fixed(**link)
    window = AdaptiveWindow(WindowPolicy(ceiling=256))
    run = simulate(window, **link)
    assert run.late_rate >= 0.8 * best
    assert max(run.limits[len(run.limits) // 2 :]) <= 40, run.limits[-20:]


def test_grows_from_the_initial_window_quickly() -> None:
    window = AdaptiveWindow(WindowPolicy(initial=2, ceiling=256))
    run = simulate(window, delay=0.025, capacity=10_000.0, duration=1.0)
    # slow start: from 2 to the ceiling in well under a second of 50 ms rounds.
    assert max(run.limits) == 256


def test_backs_off_under_overload_with_503s() -> None:
    """Capacity drops tenfold mid-run behind a small server queue that answers 503."""
    link: dict[str, Any] = {"delay": 0.025, "capacity": 4000.0, "queue_limit": 64}
    window = AdaptiveWindow(WindowPolicy(ceiling=512))
    run = simulate(window, capacity_after=(5.0, 400.0), duration=10.0, **link)
    before = run.limits[: len(run.limits) // 3]
    after = run.limits[-200:]
    assert max(before) > 150
    assert max(after) <= 64, after[-20:]  # about the new pipe (20) plus the server queue
    fixed = simulate(256, capacity_after=(5.0, 400.0), duration=10.0, **link)
    # the fixed window keeps hammering the full queue; the adaptive one stops.
    assert run.rejected * 4 < fixed.rejected, (run.rejected, fixed.rejected)


def test_overload_cut_is_once_per_round_and_respects_the_floor() -> None:
    window = AdaptiveWindow(WindowPolicy(initial=64, ceiling=64, floor=2))
    for _ in range(30):
        window.on_sample(0.01, 1.0, congested=True)
    assert window.limit == 32  # thirty 503s in one round are one signal
    for k in range(200):
        window.on_sample(0.01, 1.0 + k, congested=True)
        window.on_sample(0.01, 1.0 + k)
    assert window.limit == 2


def test_latency_growth_shrinks_the_window() -> None:
    policy = WindowPolicy(initial=16, ceiling=64, slack=0.0, startup_gain=2.0, min_round=0.0)
    window = AdaptiveWindow(policy)
    t = 0.0
    for _ in range(16):
        t += 0.001
        window.on_sample(0.010, t)
    assert window.limit == 32  # a clean round: slow start doubles
    for _ in range(32):
        t += 0.001
        window.on_sample(0.050, t)  # five times the base latency, at the same rate
    assert window.limit == 32  # one slow round is held, not yet a queue
    for _ in range(32):
        t += 0.001
        window.on_sample(0.050, t)
    # to what the rate needs at half the allowed queue (Little's law): 1,000
    # answers/s x (10 ms base + 20 ms target) / 2 = 15 in flight
    assert window.limit in (14, 15)  # 15, give or take the clock's float rounding
    assert not window.slow_start


def test_a_round_lasts_at_least_min_round() -> None:
    # On a fast link a window's worth of answers arrives within milliseconds;
    # rates over so short a round are noise, so the round waits for min_round.
    window = AdaptiveWindow(WindowPolicy(initial=16, ceiling=64, min_round=0.05), now=0.0)
    t = 0.0
    for _ in range(40):  # 40 clean answers in 40 ms: more than a window, not a round yet
        t += 0.001
        window.on_sample(0.001, t)
    assert window.limit == 16
    for _ in range(20):  # past 50 ms: the round ends and slow start grows the window
        t += 0.001
        window.on_sample(0.001, t)
    assert window.limit > 16


def test_a_round_ends_when_a_request_sent_after_it_began_completes() -> None:
    """A round is one round trip (BBR's count), not a window's worth of answers.

    16 requests leave at 0 and come back at 50 ms: the first round, and the
    window grows to 46. Only 30 of the next 46 can leave at once (the reader
    had no more queued); the first of them to come back ends the round, so
    slow start grows the window again one round trip later, not when the
    46th answer arrives a round trip after that.
    """
    policy = WindowPolicy(initial=16, ceiling=256, min_round=0.0, startup_gain=2.875)
    window = AdaptiveWindow(policy, now=0.0)
    for k in range(16):
        window.on_sample(0.050, 0.050 + k * 1e-4)
    assert window.limit == 46
    grown_at = 0.050 + 15 * 1e-4
    window.on_sample(0.050, grown_at + 1e-3 + 0.050)  # one of the 30, sent just after
    assert window.limit == 132
    assert window.slow_start


def test_a_round_cut_short_by_a_burst_is_not_read_as_a_full_pipe() -> None:
    """Requests sent together come back together: the first of a burst ends its
    round alone, and one answer over a round trip is no measure of the link.
    Such rounds keep growing the window in slow start and are not counted as
    rounds without progress (three of which would end slow start)."""
    policy = WindowPolicy(initial=16, ceiling=1024, min_round=0.0, startup_gain=2.0)
    window = AdaptiveWindow(policy, now=0.0)
    for k in range(16):
        window.on_sample(0.050, 0.050 + k * 1e-4)
    t = 0.050 + 15 * 1e-4
    limits = [window.limit]
    for _ in range(3):  # each round: the first answer of the burst sent at its start
        t += 0.050 + 1e-3
        window.on_sample(0.050, t)
        limits.append(window.limit)
    assert limits == [32, 64, 128, 256]
    assert window.slow_start


def test_reach_is_what_the_window_may_grow_to_this_round() -> None:
    window = AdaptiveWindow(WindowPolicy(initial=32, ceiling=256, startup_gain=2.5))
    assert (window.limit, window.reach) == (32, 80)  # slow start: x startup_gain
    window = AdaptiveWindow(WindowPolicy(initial=128, ceiling=256))
    assert window.reach == 256  # never past the ceiling
    gate = WindowGate(AdaptiveWindow(WindowPolicy(initial=8, ceiling=16, growth=0.25)))
    gate.window.slow_start = False  # type: ignore[union-attr]
    assert (gate.limit, gate.reach) == (8, 10)  # steady growth: x (1 + growth)
    assert WindowGate(12).reach == 12  # a fixed gate reaches no further


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor": 0},
        {"floor": 5, "ceiling": 4},
        {"ease": 0.0},
        {"backoff": 1.5},
        {"tolerance": 0.5},
        {"payoff": 1.0},
        {"startup_gain": 1.0},
        {"connect_factor": 0.5},
        {"connect_slack": -1.0},
        {"min_round": -1.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WindowPolicy(**kwargs)  # type: ignore[arg-type]


def test_gate_bounds_calls_and_feeds_the_window() -> None:
    async def main() -> tuple[int, int, int]:
        window = AdaptiveWindow(WindowPolicy(initial=2, ceiling=8, min_round=0.0))
        gate = WindowGate(window)
        peak = 0

        async def call(i: int) -> int:
            nonlocal peak
            peak = max(peak, gate.in_flight)
            assert gate.in_flight <= gate.limit
            await asyncio.sleep(0.001)
            return i

        out = await asyncio.gather(*(gate.run(call, i) for i in range(200)))
        assert out == list(range(200))
        return peak, window.limit, gate.in_flight

    peak, limit, left = asyncio.run(main())
    assert 2 < peak <= 8  # it grew past the initial window, never past the ceiling
    assert limit == 8
    assert left == 0


def test_gate_counts_overload_errors_but_not_missing_tiles() -> None:
    async def main() -> tuple[int, int]:
        window = AdaptiveWindow(WindowPolicy(initial=8, ceiling=8))
        gate = WindowGate(window)

        async def missing() -> None:
            raise NotFoundError("no such tile", status=404)

        async def busy() -> None:
            raise UnavailableError("try later", status=503)

        with pytest.raises(NotFoundError):
            await gate.run(missing)
        after_404 = window.limit
        with pytest.raises(UnavailableError):
            await gate.run(busy)
        return after_404, window.limit

    assert asyncio.run(main()) == (8, 4)


def test_fixed_gate_and_cancelled_waiters() -> None:
    async def main() -> int:
        gate = WindowGate(1)
        release = asyncio.Event()
        first = asyncio.ensure_future(gate.run(release.wait))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(gate.run(asyncio.sleep, 0))
        await asyncio.sleep(0)
        second.cancel()  # a waiter that leaves must not take the slot with it
        release.set()
        await first
        await gate.run(asyncio.sleep, 0)
        return gate.in_flight

    assert asyncio.run(main()) == 0
    with pytest.raises(ValueError):
        WindowGate(0)


def test_a_slow_connect_is_an_overload_signal() -> None:
    """A connect slower than ``connect_factor`` x the base round trip (a SYN dropped
    by a full listen queue waits out a one-second retransmit) cuts the window."""
    window = AdaptiveWindow(WindowPolicy(initial=32, ceiling=64, connect_factor=4.0, slack=0.0))
    window.on_connect(0.010, 0.0)  # before any request: the fastest connect is the base
    assert window.limit == 32
    for k in range(32):
        window.on_sample(0.050, 0.1 + k * 0.001)  # base round trip: 50 ms
    assert window.limit == 64 and window.min_latency == 0.050
    window.on_connect(0.150, 0.2)  # three round trips: a slow path, not a dropped SYN
    assert window.limit == 64
    window.on_connect(1.05, 1.3)  # a retransmitted SYN
    assert window.limit == 32 and not window.slow_start
    window.on_connect(1.05, 1.3)  # a burst of slow connects is one signal per round
    assert window.limit == 32


def test_the_first_slow_connect_is_judged_against_the_fastest() -> None:
    window = AdaptiveWindow(WindowPolicy(initial=16, slack=0.005))
    window.on_connect(0.001, 0.0)
    window.on_connect(1.0, 1.0)
    assert window.limit == 8


def test_gate_passes_connect_times_to_its_window() -> None:
    window = AdaptiveWindow(WindowPolicy(initial=16))
    gate = WindowGate(window, clock=lambda: 5.0)
    gate.on_connect(0.001)
    gate.on_connect(2.0)
    assert window.limit == 8
    WindowGate(4).on_connect(2.0)  # a fixed gate has nothing to adapt
