"""Collector-health metrics (namespace ``forum_monitor_``), held per registry.

One ``Telemetry`` is created per service (and per test, with a fresh
``CollectorRegistry``) and handed to the HTTP client and the scheduler. Labels
are bounded: community ids and hosts come from the config, reasons and codes
from small fixed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from monitor.errors import FAILURE_REASONS, REJECTION_REASONS

# ``*_created`` series double the series count and no dashboard or rule reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Telemetry:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.polls = Counter(
            "forum_monitor_polls",
            "Polls attempted, per community.",
            ["community", "source"],
            registry=registry,
        )
        self.poll_failures = Counter(
            "forum_monitor_poll_failures",
            "Polls that failed, by reason.",
            ["community", "source", "reason"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            "forum_monitor_poll_duration_seconds",
            "Wall time of one poll of one community.",
            ["community", "source"],
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "forum_monitor_last_success_timestamp_seconds",
            "When the community was last polled successfully (Unix time).",
            ["community"],
            registry=registry,
        )
        self.items_ingested = Counter(
            "forum_monitor_items_ingested",
            "Items written to the store (new or changed), by kind.",
            ["community", "source", "kind"],
            registry=registry,
        )
        self.items_rejected = Counter(
            "forum_monitor_items_rejected",
            "Items a source sent that could not be normalized (each counted once), by reason; "
            "the rest of their page is stored.",
            ["community", "source", "reason"],
            registry=registry,
        )
        self.http_requests = Counter(
            "forum_monitor_http_requests",
            "HTTP requests sent to sources, by host and status code ('other' for a status "
            "outside a fixed set, 'error' when none came).",
            ["host", "code"],
            registry=registry,
        )
        self.rate_limit_remaining = Gauge(
            "forum_monitor_rate_limit_remaining",
            "Requests the host says are left in its current rate-limit window.",
            ["host"],
            registry=registry,
        )
        self.source_up = Gauge(
            "forum_monitor_source_up",
            "1 if the last poll of the community succeeded, else 0.",
            ["community"],
            registry=registry,
        )

        self.polls_waiting = Gauge(
            "forum_monitor_polls_waiting",
            "Polls due and queued for a slot (max_concurrent_polls), not yet started.",
            registry=registry,
        )
        self.polls_running = Gauge(
            "forum_monitor_polls_running",
            "Polls running now (at most max_concurrent_polls).",
            registry=registry,
        )
        self.polls_coalesced = Counter(
            "forum_monitor_polls_coalesced",
            "Polls asked for while the community's previous poll was still waiting or "
            "running, and so not queued again.",
            ["community"],
            registry=registry,
        )

        self.poll_interval = Gauge(
            "forum_monitor_poll_interval_seconds",
            "Configured poll interval of the community (for staleness rules).",
            ["community"],
            registry=registry,
        )

    def declare_community(self, community: str, source: str, *, interval: float) -> None:
        """Make a community's series exist at zero before its first poll."""
        self.poll_interval.labels(community=community).set(interval)
        # every failure reason exists at zero, so rate() sees the very first failure
        for reason in FAILURE_REASONS:
            self.poll_failures.labels(community=community, source=source, reason=reason)
        self.polls.labels(community=community, source=source)
        self.polls_coalesced.labels(community=community)
        self.poll_duration.labels(community=community, source=source)
        for kind in ("thread", "reply"):
            self.items_ingested.labels(community=community, source=source, kind=kind)
        for reason in REJECTION_REASONS:
            self.items_rejected.labels(community=community, source=source, reason=reason)
