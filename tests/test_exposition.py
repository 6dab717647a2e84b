"""/metrics from parts rendered once per change: the same samples prometheus_client wrote
before, each community rendered again only when it changed, gzip when asked.

The reference for the collector-health families is the prometheus_client Counters,
Gauges and Histograms they used to be; for the community families, the collector's own
``collect()``, which ``generate_latest`` renders sample by sample at every call.
"""

from __future__ import annotations

import gzip
import math
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor import exporter, exposition
from monitor.analysis.snapshot import Snapshots
from monitor.api import create_app
from monitor.errors import FAILURE_REASONS, REJECTION_REASONS
from monitor.exporter import CommunityCollector
from monitor.service import Service
from monitor.store import db
from monitor.telemetry import POLL_BUCKETS, Telemetry
from tests.support import missing
from tests.synthetic import NOW, community_ids, filled_snapshots, settings_for, snapshot_of

Parsed = tuple[set[tuple[str, str, str]], set[tuple[str, tuple[tuple[str, str], ...], float]]]


def parsed(text: bytes | str) -> Parsed:
    """(name, type, help) of every family and (name, labels, value) of every sample."""
    families, samples = set(), set()
    body = text.decode() if isinstance(text, bytes) else text
    for family in text_string_to_metric_families(body):
        families.add((family.name, family.type, family.documentation))
        for sample in family.samples:
            samples.add((sample.name, tuple(sorted(sample.labels.items())), sample.value))
    return families, samples


def old_telemetry(registry: CollectorRegistry) -> Any:
    """The collector-health metrics as they were: prometheus_client's own, per label set."""

    class Old:
        polls = Counter(
            "forum_monitor_polls",
            "Polls attempted, per community.",
            ["community", "source"],
            registry=registry,
        )
        poll_failures = Counter(
            "forum_monitor_poll_failures",
            "Polls that failed, by reason.",
            ["community", "source", "reason"],
            registry=registry,
        )
        poll_duration = Histogram(
            "forum_monitor_poll_duration_seconds",
            "Wall time of one poll of one community.",
            ["community", "source"],
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        last_success = Gauge(
            "forum_monitor_last_success_timestamp_seconds",
            "When the community was last polled successfully (Unix time).",
            ["community"],
            registry=registry,
        )
        items_ingested = Counter(
            "forum_monitor_items_ingested",
            "Items written to the store (new or changed), by kind.",
            ["community", "source", "kind"],
            registry=registry,
        )
        items_rejected = Counter(
            "forum_monitor_items_rejected",
            "Items a source sent that could not be normalized (each counted once), by reason; "
            "the rest of their page is stored.",
            ["community", "source", "reason"],
            registry=registry,
        )
        http_requests = Counter(
            "forum_monitor_http_requests",
            "HTTP requests sent to sources, by host and status code ('other' for a status "
            "outside a fixed set, 'error' when none came).",
            ["host", "code"],
            registry=registry,
        )
        rate_limit_remaining = Gauge(
            "forum_monitor_rate_limit_remaining",
            "Requests the host says are left in its current rate-limit window.",
            ["host"],
            registry=registry,
        )
        source_up = Gauge(
            "forum_monitor_source_up",
            "1 if the last poll of the community succeeded, else 0.",
            ["community"],
            registry=registry,
        )
        poll_interval = Gauge(
            "forum_monitor_poll_interval_seconds",
            "Configured poll interval of the community (for staleness rules).",
            ["community"],
            registry=registry,
        )

    return Old()


def operate(telemetry: Any, *, communities: int, seed: int) -> None:
    """What a service does to its telemetry over a few polls of every community; the same
    calls on either implementation."""
    chance = random.Random(seed)
    for n, community in enumerate(community_ids(communities)):
        source = "reddit" if n % 2 else "discourse"
        telemetry.poll_interval.labels(community=community).set(300)
        for reason in FAILURE_REASONS[n % 3 :]:
            telemetry.poll_failures.labels(community=community, source=source, reason=reason)
        telemetry.polls.labels(community=community, source=source)
        telemetry.poll_duration.labels(community=community, source=source)
        for kind in ("thread", "reply"):
            telemetry.items_ingested.labels(community=community, source=source, kind=kind)
        for reason in REJECTION_REASONS[: n % 4]:
            telemetry.items_rejected.labels(community=community, source=source, reason=reason)
        for _ in range(n % 5):
            telemetry.polls.labels(community=community, source=source).inc()
            telemetry.poll_duration.labels(community=community, source=source).observe(
                chance.choice(
                    [0.0, 0.05, 0.3, 0.5, 2.5, 299.9, 300, 301, 1e6, chance.random() * 40]
                )
            )
            telemetry.items_ingested.labels(community=community, source=source, kind="reply").inc(
                chance.randrange(0, 400)
            )
            telemetry.last_success.labels(community=community).set(NOW + chance.random())
            telemetry.source_up.labels(community=community).set(1)
        if n % 7 == 3:
            telemetry.poll_failures.labels(
                community=community, source=source, reason="timeout"
            ).inc()
            telemetry.items_rejected.labels(
                community=community, source=source, reason="bad_time"
            ).inc(2)
            telemetry.source_up.labels(community=community).set(0)
    telemetry.http_requests.labels(host="www.reddit.com", code="200").inc(31)
    telemetry.rate_limit_remaining.labels(host="www.reddit.com").set(97.5)


def test_health_text_has_the_samples_prometheus_client_wrote() -> None:
    before = CollectorRegistry()
    operate(old_telemetry(before), communities=40, seed=1)
    telemetry = Telemetry(CollectorRegistry())
    operate(telemetry, communities=40, seed=1)
    assert parsed(telemetry.exposition()) == parsed(generate_latest(before))
    assert telemetry.exposition() == generate_latest(telemetry.registry)


def test_health_series_read_as_before_through_the_registry() -> None:
    before = CollectorRegistry()
    operate(old_telemetry(before), communities=12, seed=2)
    telemetry = Telemetry(CollectorRegistry())
    operate(telemetry, communities=12, seed=2)
    for labels, name in [
        ({"community": "community-0003", "source": "reddit"}, "forum_monitor_polls_total"),
        (
            {"community": "community-0004", "source": "discourse", "le": "2.0"},
            "forum_monitor_poll_duration_seconds_bucket",
        ),
        (
            {"community": "community-0010", "source": "discourse", "reason": "timeout"},
            "forum_monitor_poll_failures_total",
        ),
        ({"community": "community-0011"}, "forum_monitor_last_success_timestamp_seconds"),
    ]:
        value = telemetry.registry.get_sample_value(name, labels)
        assert value is not None and value == before.get_sample_value(name, labels)


def test_health_refuses_what_prometheus_client_refuses() -> None:
    telemetry = Telemetry(CollectorRegistry())
    with pytest.raises(ValueError, match="labels"):
        telemetry.polls.labels(community="c")
    with pytest.raises(ValueError, match="non-negative"):
        telemetry.polls.labels(community="c", source="reddit").inc(-1)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The communities in each render from here on, one entry per render."""
    found: list[set[str]] = []
    real = exposition.render

    def counting(families: Any) -> list[tuple[bytes, bytes]]:
        found.append({s.labels["community"] for f in families for s in f.samples})
        return real(families)

    monkeypatch.setattr(exposition, "render", counting)
    return found


def test_health_renders_a_community_again_only_after_it_changed(
    renders: list[set[str]],
) -> None:
    telemetry = Telemetry(CollectorRegistry())
    operate(telemetry, communities=30, seed=3)
    renders.clear()
    first = telemetry.exposition()
    assert sorted(c for found in renders for c in found) == community_ids(30)
    renders.clear()
    assert telemetry.exposition() == first
    assert renders == []
    telemetry.polls.labels(community="community-0007", source="discourse").inc()
    changed = telemetry.exposition()
    assert renders == [{"community-0007"}]
    assert changed != first and changed == generate_latest(telemetry.registry)


@pytest.fixture
def counted_communities(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The community of every snapshot rendered from here on."""
    found: list[str] = []
    real = exporter.render_community

    def counting(snapshot: Any) -> tuple[bytes, ...]:
        found.append(snapshot.community)
        return real(snapshot)

    monkeypatch.setattr(exporter, "render_community", counting)
    return found


def test_community_text_is_what_the_collector_wrote_sample_by_sample() -> None:
    snapshots = filled_snapshots(settings_for(25))
    collector = CommunityCollector(snapshots)
    registry = CollectorRegistry()
    registry.register(collector)
    text = collector.exposition()
    assert text == generate_latest(registry)
    families, samples = parsed(text)
    assert len(samples) > 25 * 50
    assert {name for name, _, _ in families} >= {"forum_posts", "forum_decline_score"}


def test_a_community_is_rendered_once_per_snapshot_not_per_scrape(
    counted_communities: list[str],
) -> None:
    settings = settings_for(20)
    snapshots = Snapshots(settings=settings, engine=db.make_engine("sqlite://"))
    collector = CommunityCollector(snapshots)
    for number, community in enumerate(settings.communities):
        snapshots.install(snapshot_of(number, community.id))
    assert sorted(counted_communities) == community_ids(20)  # when installed
    first = collector.exposition()
    for _ in range(3):
        assert collector.exposition() == first
    assert len(counted_communities) == 20
    snapshots.install(snapshot_of(1, "community-0005"))
    assert counted_communities[20:] == ["community-0005"]
    after = collector.exposition()
    assert len(counted_communities) == 21
    assert after != first
    registry = CollectorRegistry()
    registry.register(collector)
    assert after == generate_latest(registry)


def test_snapshots_installed_before_the_collector_are_rendered_at_the_first_scrape(
    counted_communities: list[str],
) -> None:
    snapshots = filled_snapshots(settings_for(6))
    collector = CommunityCollector(snapshots)
    assert counted_communities == []
    collector.exposition()
    collector.exposition()
    assert sorted(counted_communities) == community_ids(6)


def service_of(count: int) -> Service:
    settings = settings_for(count)
    service = Service(settings, clock=lambda: NOW)
    service.use_snapshots(filled_snapshots(settings))
    operate(service.telemetry, communities=count, seed=4)
    return service


def test_the_service_serves_what_generate_latest_writes_of_its_registry() -> None:
    service = service_of(30)
    assert service.exposition() == generate_latest(service.registry)


def test_promtool_finds_nothing_to_say_about_the_text() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian: prometheus)")
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=service_of(30).exposition().decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


@pytest.fixture
async def metrics_get() -> AsyncIterator[Callable[..., Any]]:
    service = service_of(20)
    transport = httpx.ASGITransport(app=create_app(service, schedule=False, clock=lambda: NOW))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

        async def get(method: str, **headers: str) -> tuple[httpx.Response, bytes]:
            async with http.stream(method, "/metrics", headers=headers) as response:
                return response, b"".join([chunk async for chunk in response.aiter_raw()])

        get.service = service  # type: ignore[attr-defined]
        yield get


async def test_metrics_are_gzipped_when_the_scraper_asks(metrics_get: Any) -> None:
    plain, plain_body = await metrics_get("GET", **{"Accept-Encoding": "identity"})
    zipped, zipped_body = await metrics_get("GET", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.headers["content-type"] == plain.headers["content-type"]
    assert plain_body == metrics_get.service.exposition()
    assert gzip.decompress(zipped_body) == plain_body
    assert len(zipped_body) * 5 < len(plain_body)
    head, head_body = await metrics_get("HEAD", **{"Accept-Encoding": "gzip"})
    assert head_body == b"" and head.headers["content-encoding"] == "gzip"
    assert head.headers["content-length"] == zipped.headers["content-length"]


def test_a_nan_duration_lands_where_prometheus_client_puts_it() -> None:
    before = CollectorRegistry()
    old = old_telemetry(before)
    telemetry = Telemetry(CollectorRegistry())
    for one in (old, telemetry):
        one.poll_duration.labels(community="c", source="rss").observe(1.0)
        one.poll_duration.labels(community="c", source="rss").observe(float("nan"))
    labels = {"community": "c", "source": "rss"}
    name = "forum_monitor_poll_duration_seconds"
    for suffix, extra in [("_count", {}), ("_bucket", {"le": "+Inf"}), ("_bucket", {"le": "2.0"})]:
        found = telemetry.registry.get_sample_value(name + suffix, {**labels, **extra})
        assert found == before.get_sample_value(name + suffix, {**labels, **extra}) == 1
    assert math.isnan(telemetry.registry.get_sample_value(name + "_sum", labels) or 0.0)


def test_a_community_that_appears_during_a_scrape_is_in_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poller may declare a series while a scrape renders (outside the lock)."""
    telemetry = Telemetry(CollectorRegistry())
    operate(telemetry, communities=3, seed=5)
    real = exposition.render

    def declaring_meanwhile(families: Any) -> list[tuple[bytes, bytes]]:
        telemetry.polls.labels(community="late", source="rss")
        return real(families)

    monkeypatch.setattr(exposition, "render", declaring_meanwhile)
    assert b'community="late"' not in telemetry.exposition()
    monkeypatch.setattr(exposition, "render", real)
    assert telemetry.exposition() == generate_latest(telemetry.registry)
    assert b'forum_monitor_polls_total{community="late",source="rss"} 0.0' in (
        telemetry.exposition()
    )
