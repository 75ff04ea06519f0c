"""Prometheus metrics of one proxy (its own registry, so several can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ProxyMetrics"]


class ProxyMetrics:
    """The proxy's counters and gauges, exposed at ``/metrics``.

    Labels: ``kind`` is ``tile``, ``entries``, ``checkpoint`` or ``mirror``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hits = Counter(
            "rekorkit_proxy_hits", "Requests answered from verified cache", ["kind"], registry=r
        )
        self.misses = Counter(
            "rekorkit_proxy_misses", "Tiles fetched from the upstream", ["kind"], registry=r
        )
        self.served_bytes = Counter(
            "rekorkit_proxy_served_bytes", "Response body bytes sent", ["kind"], registry=r
        )
        self.upstream_bytes = Counter(
            "rekorkit_proxy_upstream_bytes", "Bytes read from the upstream", ["kind"], registry=r
        )
        self.upstream_errors = Counter(
            "rekorkit_proxy_upstream_errors", "Failed upstream reads", ["kind"], registry=r
        )
        self.upstream_latency = Histogram(
            "rekorkit_proxy_upstream_latency_seconds",
            "Upstream request latency",
            ["kind"],
            registry=r,
        )
        self.verification_failures = Counter(
            "rekorkit_proxy_verification_failures",
            "Upstream data refused because it did not verify",
            ["kind"],
            registry=r,
        )
        self.checkpoint_size = Gauge(
            "rekorkit_proxy_checkpoint_size", "Tree size of the verified checkpoint", registry=r
        )
        self.lag = Gauge(
            "rekorkit_proxy_lag_entries",
            "Entries the upstream's checkpoint is ahead of the verified one",
            registry=r,
        )
        self.sync_runs = Counter(
            "rekorkit_proxy_sync_runs", "Sync job passes", ["outcome"], registry=r
        )
        self.sync_position = Gauge(
            "rekorkit_proxy_sync_position", "Entries mirrored and verified", registry=r
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
