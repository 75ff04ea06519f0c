"""Prometheus metrics of one proxy (its own registry, so several can share a process)."""

from __future__ import annotations

from rekorkit.metrics import MetricSet

__all__ = ["ProxyMetrics"]


class ProxyMetrics(MetricSet):
    """The proxy's counters and gauges, exposed at ``/metrics``.

    Labels: ``kind`` is ``tile``, ``entries``, ``checkpoint`` or ``mirror``.
    """

    def __init__(self) -> None:
        super().__init__("rekorkit_proxy")
        self.hits = self.counter("hits", "Requests answered from verified cache", "kind")
        self.misses = self.counter("misses", "Tiles fetched from the upstream", "kind")
        self.served_bytes = self.counter("served_bytes", "Response body bytes sent", "kind")
        self.upstream_bytes = self.counter("upstream_bytes", "Bytes read from the upstream", "kind")
        self.upstream_errors = self.counter("upstream_errors", "Failed upstream reads", "kind")
        self.upstream_latency = self.histogram(
            "upstream_latency_seconds", "Upstream request latency", "kind"
        )
        self.verification_failures = self.counter(
            "verification_failures", "Upstream data refused because it did not verify", "kind"
        )
        self.checkpoint_size = self.gauge("checkpoint_size", "Tree size of the verified checkpoint")
        self.lag = self.gauge(
            "lag_entries", "Entries the upstream's checkpoint is ahead of the verified one"
        )
        self.sync_runs = self.counter("sync_runs", "Sync job passes", "outcome")
        self.sync_position = self.gauge("sync_position", "Entries mirrored and verified")
