"""Prometheus metrics of the submission worker (its own registry).

Served with ``/healthz`` by the monitor's small HTTP responder
(:class:`rekorkit.monitor.metrics.MetricsServer`) when the worker is given a
``metrics_port``. Names follow the Prometheus conventions
(https://prometheus.io/docs/practices/naming/): counters end in ``_total``
and durations are in seconds.
"""

from __future__ import annotations

from rekorkit.metrics import MetricSet
from rekorkit.queue.model import QueueCounts, State

__all__ = ["QueueMetrics"]

# Submissions to a log take milliseconds on loopback, seconds on a busy
# public instance; a timed-out write waits for most of a lease.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class QueueMetrics(MetricSet):
    """The worker's counters, gauges and latency histogram.

    Outcome labels: ``logged`` (submitted and verified), ``resolved`` (found
    already in the log by lookup), ``retry``, ``dead``, ``lost_lease`` (the
    outcome was dropped: another worker holds the item now).
    """

    def __init__(self) -> None:
        super().__init__("rekorkit_queue")
        self.submissions = self.counter("submissions", "Outcomes recorded, by outcome", "outcome")
        self.attempts = self.counter(
            "attempts", "Submission attempts, by result (ok or the error class)", "result"
        )
        self.in_flight = self.gauge("in_flight", "Submissions in flight now")
        self.depth = self.gauge("depth", "Submissions in the queue, by state", "state")
        self.due = self.gauge("due", "Submissions due now")
        self.oldest_due_age = self.gauge(
            "oldest_due_age_seconds",
            "How long the longest-waiting due submission has been due (0: none)",
        )
        self.latency = self.histogram(
            "submit_latency_seconds",
            "Time from claim to outcome of one submission (lookups and verification included)",
            buckets=_LATENCY_BUCKETS,
        )
        for state in State:
            self.depth.labels(state.value).set(0)

    def observe_counts(self, counts: QueueCounts, *, now: float) -> None:
        """Set the depth gauges from a :meth:`QueueStorage.counts` result."""
        for state, n in counts.by_state.items():
            self.depth.labels(state).set(n)
        self.due.set(counts.due)
        oldest = counts.oldest_due_at
        self.oldest_due_age.set(max(0.0, now - oldest) if oldest is not None else 0.0)
