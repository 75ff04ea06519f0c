"""The monitor's Prometheus metrics (served by :class:`rekorkit.metrics.MetricsServer`)."""

from __future__ import annotations

from rekorkit.metrics import MetricSet, MetricsServer

__all__ = ["MetricsServer", "MonitorMetrics"]


class MonitorMetrics(MetricSet):
    """The monitor's metrics, in their own registry."""

    def __init__(self) -> None:
        super().__init__("rekorkit_monitor")
        self.log_size = self.gauge("log_size", "Latest verified size", "log")
        self.frontier = self.gauge("frontier", "Size up to which entries are stored", "log")
        self.lag = self.gauge("lag_entries", "Entries not yet stored", "log")
        self.entries = self.counter("entries", "Entries verified and stored", "log")
        self.rate = self.gauge("entries_per_second", "Rate of the last sync step", "log")
        self.alerts = self.counter("alerts", "New alerts by kind", "kind")
        self.errors = self.counter("errors", "Failed rounds by log", "log")
        self.last_success = self.gauge(
            "last_success_timestamp_seconds", "Unix time of the last successful round", "log"
        )
        self.deliveries_failed = self.counter("delivery_failures", "Failed alert deliveries")
