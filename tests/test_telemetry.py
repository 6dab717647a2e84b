"""What the collector-health families cost per community, and what they still show.

README ("Series per community") says why each series exists before its first event.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.errors import FAILURE_REASONS
from monitor.telemetry import DECLARED_FAILURE_REASONS, Telemetry


def series_of(telemetry: Telemetry, community: str) -> dict[str, int]:
    """Samples per family of ``community``."""
    found: dict[str, int] = {}
    for family in text_string_to_metric_families(generate_latest(telemetry.registry).decode()):
        for sample in family.samples:
            if sample.labels.get("community") == community:
                found[family.name] = found.get(family.name, 0) + 1
    return found


def polled_once(telemetry: Telemetry, community: str) -> None:
    """A declared community after one successful poll, as the poller records it."""
    telemetry.declare_community(community, "reddit", interval=300)
    telemetry.polls.labels(community=community, source="reddit").inc()
    telemetry.poll_duration.labels(community=community, source="reddit").observe(1.2)
    telemetry.last_success.labels(community=community).set(1_795_000_000)
    telemetry.source_up.labels(community=community).set(1)
    telemetry.items_ingested.labels(community=community, source="reddit", kind="reply").inc(9)


def test_a_polled_community_has_nineteen_health_series() -> None:
    telemetry = Telemetry(CollectorRegistry())
    polled_once(telemetry, "gig")
    assert series_of(telemetry, "gig") == {
        "forum_monitor_polls": 1,
        # the reasons that come and go: a single one is the whole event
        "forum_monitor_poll_failures": 5,
        # 5 buckets and +Inf, _count and _sum
        "forum_monitor_poll_duration_seconds": 8,
        "forum_monitor_last_success_timestamp_seconds": 1,
        "forum_monitor_items_ingested": 2,
        "forum_monitor_source_up": 1,
        "forum_monitor_poll_interval_seconds": 1,
    }


def test_declared_failure_reasons_start_at_zero_and_the_others_at_their_first_failure() -> None:
    telemetry = Telemetry(CollectorRegistry())
    polled_once(telemetry, "gig")
    read = telemetry.registry.get_sample_value
    labels = {"community": "gig", "source": "reddit"}
    name = "forum_monitor_poll_failures_total"
    for reason in ("connect", "timeout", "http_5xx", "rate_limited", "malformed"):
        assert read(name, {**labels, "reason": reason}) == 0
    for reason in ("http_4xx", "redirect", "too_large", "store", "internal"):
        assert read(name, {**labels, "reason": reason}) is None
    telemetry.poll_failures.labels(**labels, reason="redirect").inc()
    assert read(name, {**labels, "reason": "redirect"}) == 1
    rejected = {**labels, "reason": "bad_time"}
    assert read("forum_monitor_items_rejected_total", rejected) is None
    telemetry.items_rejected.labels(**rejected).inc(3)
    assert read("forum_monitor_items_rejected_total", rejected) == 3


def test_poll_duration_buckets_reach_the_poll_deadline() -> None:
    telemetry = Telemetry(CollectorRegistry())
    polled_once(telemetry, "gig")
    bounds = [
        sample.labels["le"]
        for family in text_string_to_metric_families(generate_latest(telemetry.registry).decode())
        if family.name == "forum_monitor_poll_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    ]
    assert bounds == ["0.5", "2.0", "10.0", "60.0", "300.0", "+Inf"]


def test_declared_reasons_are_failure_reasons() -> None:
    assert set(DECLARED_FAILURE_REASONS) < set(FAILURE_REASONS)
