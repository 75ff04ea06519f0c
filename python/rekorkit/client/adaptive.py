"""An adaptive in-flight window for bulk reads: as many requests as the link carries.

A log 50 ms away needs hundreds of reads in flight to fill its link, a small
static server on loopback needs one or two, and neither number can be known
before the first request. :class:`AdaptiveWindow` finds it the way TCP
congestion control does (RFC 5681 slow start and multiplicative decrease; the
delay signal of TCP Vegas and the full-pipe test of BBR,
draft-cardwell-iccrg-bbr-congestion-control):

* **rounds**: a round ends when a request sent after it began completes
  (one round trip, as BBR counts them), or when as many requests have
  completed as the window held when it began, and never before ``min_round``;
* **slow start**: the window grows ``startup_gain`` times each round (BBR's
  2.89) while the delivery rate grows; three rounds without 25 % more
  throughput mean the pipe is full;
* **steady growth**: after that it grows by an eighth per round, so a link
  that gets faster is still found quickly;
* **latency**: a round whose median latency exceeds ``tolerance`` times the
  path's base round trip plus ``slack``, while the requests it had in flight
  (Little's law: rate x mean latency) delivered no more than ``payoff`` per
  doubling over the best rate seen at a smaller load, is building a queue somewhere
  (server, proxy, the client's own CPU); two such rounds in a row shrink the
  window by at least ``ease``, to what the measured rate needs to keep half
  the allowed queue (Little's law, as BBR drains to its estimate of the
  bandwidth-delay product), but never below a sixteenth of it at once;
  every ``memory`` seconds one round runs with a quarter of the window to
  drain any standing queue and measure the base round trip again (BBR's
  ProbeRTT);
* **rates**: each answer's delivery rate is the number of answers that
  arrived while it was in flight over its latency, and a round's rate is its
  best (BBR's bandwidth sample), so a round boundary that splits a burst of
  answers does not read as a slower link;
* **overload**: a 429 or 503, a timeout or a failed connection cuts it by
  ``backoff`` at once, at most once per round (RFC 6585 §4, RFC 9110 §15.6.4);
  so does a connect slower than ``connect_factor`` times the base round trip
  (plus ``connect_slack``): a full listen queue drops SYNs, and each waits out a
  retransmission timeout of a second or more (RFC 6298 §2, §5);
* always within ``[floor, ceiling]``.

The window is pure logic: the caller reports each completion with its
latency and the current time. :class:`WindowGate` is the asyncio side: an
``await``-able bound that follows a window and feeds it the samples.
"""

from __future__ import annotations

import asyncio
import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from statistics import fmean, median
from typing import ParamSpec, TypeVar

from rekorkit.errors import (
    CircuitOpenError,
    RateLimitedError,
    RequestTimeoutError,
    RetryExhaustedError,
    TransportError,
    UnavailableError,
)

__all__ = ["ADAPTIVE_CEILING", "AdaptiveWindow", "WindowGate", "WindowPolicy"]

P = ParamSpec("P")
T = TypeVar("T")

# The most requests in flight a bulk reader allows by default (the verify
# engine, the monitor, the tile proxy's sync, distributed audits): the window
# adapts below it, so a near, small server is not flooded, and it is enough
# for a log 50 ms away to deliver about 300 k entries/s.
ADAPTIVE_CEILING = 256

# Completion times remembered for delivery rates: latencies longer than these
# many answers take are measured as a lower bound.
_HISTORY = 4096

# Errors that say the path to the log is overloaded, not that a read was bad.
_CONGESTION: tuple[type[Exception], ...] = (
    RateLimitedError,
    UnavailableError,
    RequestTimeoutError,
    TransportError,
    CircuitOpenError,
    RetryExhaustedError,
)


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """How an :class:`AdaptiveWindow` moves.

    Attributes:
        initial: requests in flight at the start: few enough for any HTTP
            server (browsers open six connections to a host and HTTP/2 allows
            a hundred streams), and at 50 ms of round trip the ramp to 256 in
            flight takes two rounds instead of three from 16.
        ceiling: the most requests in flight, ever.
        floor: the fewest requests in flight, even under overload.
        tolerance: a round's median latency may reach this multiple of the
            lowest recent latency (plus ``slack``) before it counts as queueing.
        slack: seconds of latency growth never counted as queueing (a few
            milliseconds of scheduling are not congestion on a loopback log).
        ease: the factor a queueing round multiplies the window by.
        backoff: the factor an overload signal multiplies the window by.
        growth: the fraction the window grows by per round after slow start.
        memory: seconds the lowest latency is trusted; after that one round
            runs at a quarter of the window to drain queues and measure it again.
        payoff: latency above the target is tolerated while more requests in
            flight still pay: each doubling of them raises the rate by this factor.
        startup_gain: the factor the window grows by per round in slow start
            (TCP's slow start doubles; BBR's startup uses 2/ln 2, about 2.89).
        connect_factor: a connect slower than this multiple of the base round
            trip (plus ``connect_slack``) is an overload signal.
        connect_slack: seconds of connect time never counted as overload: a
            loopback connect takes microseconds and a busy machine's scheduler
            adds milliseconds; a dropped SYN adds a second.
        min_round: the shortest round, in seconds. On a fast link a round of
            one window's requests lasts a few milliseconds, and rates measured
            over so few are noise that reads as "more in flight pays"; a
            longer round on such links costs nothing on slow ones, whose
            round trip is longer anyway.
    """

    initial: int = 32
    ceiling: int = ADAPTIVE_CEILING
    floor: int = 1
    tolerance: float = 2.0
    slack: float = 0.002
    ease: float = 0.8
    backoff: float = 0.5
    growth: float = 0.125
    memory: float = 10.0
    payoff: float = 1.2
    startup_gain: float = 2.89
    connect_factor: float = 4.0
    connect_slack: float = 0.1
    min_round: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got {self.floor}, {self.ceiling}")
        if not 0 < self.ease <= 1 or not 0 < self.backoff <= 1:
            raise ValueError("ease and backoff must be in (0, 1]")
        if self.tolerance < 1 or min(self.slack, self.connect_slack, self.min_round) < 0:
            raise ValueError("need tolerance >= 1, slack >= 0, connect_slack >= 0, min_round >= 0")
        if self.growth <= 0 or self.memory <= 0:
            raise ValueError("need growth > 0 and memory > 0")
        if self.payoff <= 1 or self.connect_factor < 1 or self.startup_gain <= 1:
            raise ValueError("need payoff > 1, startup_gain > 1 and connect_factor >= 1")


class AdaptiveWindow:
    """The number of requests to keep in flight, learned from completions.

    Args:
        policy: the bounds and factors (default :class:`WindowPolicy`).
        now: the current time in seconds (the clock every sample uses);
            ``None``: the first request's start, known from the first sample.
    """

    def __init__(self, policy: WindowPolicy | None = None, *, now: float | None = None) -> None:
        self.policy = p = policy or WindowPolicy()
        self._window = float(min(max(p.initial, p.floor), p.ceiling))
        self.slow_start = True
        self._base: float | None = None  # the path's round trip without queueing
        self._base_at = now or 0.0
        self._started = now is not None
        self._probe_saved: float | None = None  # the window to restore after a probe
        self._best_rate = 0.0
        # (requests in flight, completions per second) of recent rounds
        self._points: deque[tuple[float, float]] = deque(maxlen=16)
        self._stalled = 0
        self._queueing = 0  # consecutive rounds that queued without paying
        self._fastest_connect: float | None = None
        self._completed_at: list[float] = []  # recent completion times, ascending
        self._new_round(now or 0.0, fresh=False)  # its requests all leave at once

    @property
    def limit(self) -> int:
        """Requests to keep in flight now."""
        return int(self._window)

    @property
    def reach(self) -> int:
        """The most requests the window may allow once this round ends.

        A reader that queues work ahead of the window queues this much, so
        that a window that grows finds the requests to fill it already waiting
        instead of a round trip later.
        """
        p = self.policy
        grown = self._window * (p.startup_gain if self.slow_start else 1 + p.growth)
        return int(min(float(p.ceiling), max(grown, self._probe_saved or 0.0)))

    @property
    def min_latency(self) -> float | None:
        """The path's base round trip: the lowest latency seen within ``memory`` seconds."""
        return self._base

    def _new_round(self, now: float, *, fresh: bool = True) -> None:
        self._round_start = now
        # A request sent after this instant ends the round when it completes;
        # None: only the count does (the first round, whose requests were all
        # sent at once, and the drained probe round, which must outlast the
        # queue it drains).
        self._fresh_after: float | None = now if fresh else None
        self._round_target = max(1, self.limit)
        self._latencies: list[float] = []
        self._rates: list[float] = []  # each completion's delivery rate
        self._cut = False

    def _shrink(self, factor: float) -> None:
        self._window = max(float(self.policy.floor), self._window * factor)
        self.slow_start = False

    def on_sample(self, latency: float, now: float, *, congested: bool = False) -> None:
        """Record one completed request.

        Args:
            latency: seconds from the request's start to its completion.
            now: the current time, on the clock given at construction.
            congested: the request failed with a sign of overload (429, 503,
                a timeout, a refused or reset connection).
        """
        if not self._started:
            self._started = True
            self._round_start = self._base_at = now - latency
            self._fresh_after = None
        if congested:
            if not self._cut:  # one cut per round: a burst of 503s is one signal
                if self._probe_saved is not None:
                    self._window, self._probe_saved = self._probe_saved, None
                self._shrink(self.policy.backoff)
                self._new_round(now)
                self._cut = True
            return
        latency = max(latency, 0.0)
        self._latencies.append(latency)
        self._rates.append(self._delivery_rate(latency, now))
        fresh = self._fresh_after is not None and now - latency > self._fresh_after
        if (
            fresh or len(self._latencies) >= self._round_target
        ) and now - self._round_start >= self.policy.min_round:
            self._end_round(now)

    def _delivery_rate(self, latency: float, now: float) -> float:
        """Completions per second over this request's flight (BBR's delivery rate).

        Answers delivered while it was in flight, itself included, over its
        latency: a rate that does not depend on where a round's boundary cuts
        a burst of answers, and that a request sent into a fuller window
        measures at that window.
        """
        times = self._completed_at
        times.append(now)
        if len(times) > 2 * _HISTORY:  # forget the oldest half
            del times[: len(times) - _HISTORY]
        if latency <= 0:
            return 0.0
        # A request older than what is remembered undercounts: a lower bound.
        before = bisect_right(times, now - latency)
        return (len(times) - before) / latency

    def on_connect(self, seconds: float, now: float) -> None:
        """Record how long a new connection took to open (its TCP handshake).

        Compared with the base round trip (or, before any request completed,
        the fastest connect seen), a slow connect is an overload signal: the
        same cut as a 503, at most once per round.
        """
        base = self._base if self._base is not None else self._fastest_connect
        if self._fastest_connect is None or seconds < self._fastest_connect:
            self._fastest_connect = seconds
        p = self.policy
        if base is not None and seconds > base * p.connect_factor + p.connect_slack:
            self.on_sample(seconds, now, congested=True)

    def _end_round(self, now: float) -> None:
        p = self.policy
        rtt = median(self._latencies)
        low = min(self._latencies)
        if self._probe_saved is not None:
            # A drained round: its minimum is the base round trip as it is now;
            # rates measured before it may describe another link.
            self._base, self._base_at = low, now
            self._window, self._probe_saved = self._probe_saved, None
            self._points.clear()
            self._new_round(now)
            return
        if self._base is None or low <= self._base:
            self._base, self._base_at = low, now
        if len(self._latencies) * 4 < self._round_target:
            # The first requests sent at the round's start came back ahead of
            # the rest of their burst: too few answers to rate the link by.
            # Grow as the last rated round decided; the next round rates
            # the burst.
            if self._queueing <= 0:
                self._grow()
        else:
            self._judge(rtt, self._base)
        if now - self._base_at > p.memory and self._window > p.floor:
            # The base is old and a standing queue may hide the path's real
            # round trip: drain for one round to measure it (BBR's ProbeRTT).
            self._probe_saved = self._window
            self._window = max(float(p.floor), self._window / 4)
            self._new_round(now, fresh=False)
            # The requests already queued complete first; the round ends
            # once the drained window's own have too.
            self._round_target = int(self._probe_saved) + self.limit
            return
        self._new_round(now)

    def _grow(self) -> None:
        p = self.policy
        gain = p.startup_gain if self.slow_start else 1 + p.growth
        self._window = min(float(p.ceiling), self._window * gain)

    def _judge(self, rtt: float, base: float) -> None:
        """Rate a round of enough answers: grow, hold or shrink the window.

        Args:
            rtt: the round's median latency.
            base: the path's base round trip.
        """
        p = self.policy
        # The round's rate: the best delivery rate of its answers (BBR's
        # bandwidth estimate, over one round).
        rate = max(self._rates)
        # Latency above the target is a queue only if the extra requests in
        # flight bought no throughput: servers and proxies that batch work
        # under load answer more per second with more in flight even as each
        # answer waits longer. In flight is what the round had (Little's law:
        # rate x mean latency), not the window: a round just after a change
        # mixes both. The comparison is with the best rate seen at a smaller
        # load: one slow round (a pause anywhere) must not make the next look
        # like more in flight pays.
        load = rate * fmean(self._latencies)
        first = self.slow_start and not self._points  # nothing to compare with yet
        lower = [pt for pt in self._points if pt[0] <= 0.8 * load]
        pays = False
        if lower:
            ref_load, ref_rate = max(lower, key=lambda pt: pt[1])
            pays = rate >= ref_rate * p.payoff ** math.log2(load / ref_load)
        self._points.append((load, rate))
        target = base * p.tolerance + p.slack
        queued = rtt > target and not (pays or first)
        # One slow round is noise (a descheduled client, a GC pause); two in a
        # row are a queue.
        self._queueing = self._queueing + 1 if queued else 0
        if self._queueing >= 2:
            # Shrink to the window whose queue is half the allowed one: in a
            # queue the rate is the bottleneck's, so the requests in flight
            # that keep it busy at that latency are rate x latency.
            wanted = rate * (base + target) / 2
            self._shrink(min(p.ease, max(1 / 16, wanted / self._window)))
            self._queueing = -1  # the next round still drains the old queue
        elif queued:
            pass  # hold the window for one round
        elif self.slow_start:
            if rate > self._best_rate * 1.25:
                self._best_rate, self._stalled = rate, 0
            else:
                self._stalled += 1
            if self._stalled >= 3:  # the pipe is full (BBR's test)
                self.slow_start = False
            else:
                self._grow()
        else:
            self._grow()


class WindowGate:
    """An asyncio bound on calls in flight that follows a window.

    With an :class:`AdaptiveWindow`, each call's latency (and whether it
    failed with a sign of overload) is reported to it, and the bound moves
    with it; with an ``int`` the bound is fixed.

    Args:
        window: an :class:`AdaptiveWindow`, or a fixed number of calls.
        clock: the time source (seconds); the window's samples use it.
    """

    def __init__(
        self, window: AdaptiveWindow | int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(window, int) and window < 1:
            raise ValueError(f"a fixed window must be >= 1, got {window}")
        self.window = window
        self._clock = clock
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        """Calls allowed in flight now."""
        w = self.window
        return w if isinstance(w, int) else w.limit

    @property
    def reach(self) -> int:
        """Calls the bound may allow by the end of the window's current round."""
        w = self.window
        return w if isinstance(w, int) else w.reach

    @property
    def in_flight(self) -> int:
        """Calls in flight now."""
        return self._in_flight

    def on_connect(self, seconds: float) -> None:
        """Report a new connection's open time to the window (a fixed gate ignores it)."""
        if isinstance(self.window, AdaptiveWindow):
            self.window.on_connect(seconds, self._clock())

    async def run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` once a slot is free; the outcome is a sample."""
        await self._acquire()
        start = self._clock()
        congested = False
        try:
            return await fn(*args, **kwargs)
        except _CONGESTION:
            congested = True
            raise
        finally:
            if isinstance(self.window, AdaptiveWindow):
                now = self._clock()
                self.window.on_sample(now - start, now, congested=congested)
            self._in_flight -= 1
            self._wake()

    async def _acquire(self) -> None:
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake counted this call in before waking it
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._in_flight -= 1  # woken, but leaving: give the slot back
                self._wake()
            raise

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)
