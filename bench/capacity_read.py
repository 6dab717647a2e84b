"""Reading at scale: /metrics, the status page and the single-community API at 10, 100 and
1,000 communities.

Ten template communities (five source kinds, 30 to 480 posts a day, two of them halving
three weeks ago, keyword groups) get 120 days of history written into a SQLite store with
bulk inserts, and a backfill run that covers it; their snapshots are computed by the real
analysis (``Snapshots.refresh``). Each size then serves clones of those ten snapshots under
its own community ids, with the collector-health series a running service would have
(every community declared and polled a dozen times, one in 25 failed once).

Between two scrapes (30 s apart, as ``deploy/prometheus/prometheus.yml`` scrapes) a tenth
of the communities are polled (every 5 minutes) and half have their snapshot refreshed
(every minute), as in a running service: the polls' collector-health series are rendered
again by the next scrape, which is timed with it; a refreshed snapshot is rendered when it
is installed, timed apart ("render at refresh").

Every request goes through the real ASGI app in this process (middleware included); its
CPU time is ``time.process_time`` around the request, so it counts every thread of the
server and none of a client. The sizes are measured in turn, round after round, so a busy
moment on the machine weighs on all of them alike; each figure is the median over rounds.

Targets: /metrics costs at most 0.1 ms of CPU per community per scrape at 1,000
communities, plain and gzip; the status page stays under 1 MB at 1,000; a single-community
API call costs the same at 1,000 communities as at 10 (ratio at most 1.5, for noise).

``read_rows()`` returns the table as rows of strings (measure, one column per size, target,
result), the last cell PASS, FAIL or info; ``python -m bench.capacity_read`` prints it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert

from monitor.analysis.rollups import DAY, day_of, refresh_days
from monitor.analysis.snapshot import SERIES_DAYS, CommunitySnapshot, Snapshots
from monitor.api import create_app
from monitor.config import Settings, settings_from_mapping
from monitor.ingest import AUTHORS, POSTS, THREADS
from monitor.service import Service
from monitor.store import db
from monitor.store.models import Community, PollRun, PollState

SIZES = (10, 100, 1000)
NOW = 1_795_000_000
TEMPLATE_RATES = (30, 60, 120, 240, 480, 45, 90, 180, 360, 75)
"""Posts a day of the template communities; the 2nd and 7th halve three weeks before NOW."""
DECLINING = (1, 6)
SOURCES = ("reddit", "discourse", "hackernews", "rss", "mastodon")
KEYWORDS = {"pay": ["pay cut"], "onboarding": ["unpaid onboarding"]}
METRICS_BUDGET_MS = 0.1
"""CPU per community per scrape at the largest size."""
STATUS_PAGE_LIMIT = 1_000_000
API_RATIO_LIMIT = 1.5
ROUNDS = 5
API_CALLS = 20
"""Single-community API calls per size and round (their mean is one round's figure)."""

Row = tuple[str, ...]


def community_entry(community_id: str, source: str) -> dict[str, Any]:
    """A valid ``[[communities]]`` entry of ``source``; nothing here is ever polled."""
    kind: dict[str, dict[str, Any]] = {
        "reddit": {"subreddit": "gigwork"},
        "discourse": {"base_url": "https://forum.example.org"},
        "hackernews": {},
        "rss": {"url": "https://blog.example.org/feed.xml"},
        "mastodon": {"base_url": "https://social.example.org", "hashtag": "gigwork"},
    }
    return {"id": community_id, "source": source, **kind[source]}


def community_id(number: int) -> str:
    return f"community-{number:04d}"


def settings_for(ids_and_sources: Sequence[tuple[str, str]]) -> Settings:
    return settings_from_mapping(
        {
            "keywords": KEYWORDS,
            "communities": [community_entry(cid, source) for cid, source in ids_and_sources],
        }
    )


def fill_template(engine: Engine, *, community: str, source: str, rate: int, drop: bool) -> None:
    """SERIES_DAYS of posts at ``rate`` a day (halved three weeks ago when ``drop``), 8 posts
    a thread, 600 authors, a keyword in every 13th post; a backfill run covers all of it."""
    chance = random.Random(rate)
    start = NOW - SERIES_DAYS * DAY
    with db.session_scope(engine) as session:
        session.add(Community(id=community, source=source, created_at=start))
        session.add(PollState(community_id=community, last_success_at=NOW - 60))
        session.add(
            PollRun(
                community_id=community,
                started_at=NOW - 120,
                finished_at=NOW - 60,
                outcome="backfill",
                covered_from=start,
            )
        )
        session.flush()
        session.execute(
            insert(AUTHORS),
            [
                {
                    "community_id": community,
                    "pseudonym": f"{community}-{a:04d}",
                    "first_seen": start + chance.randrange(SERIES_DAYS * DAY),
                    "last_seen": NOW,
                }
                for a in range(600)
            ],
        )
        first_author = (
            session.connection()
            .exec_driver_sql("SELECT min(id) FROM authors WHERE community_id = ?", (community,))
            .scalar()
        )
        posts: list[dict[str, Any]] = []
        threads: list[dict[str, Any]] = []
        created = float(start)
        number = 0
        while created < NOW - 60:
            daily = rate / 2 if drop and created >= NOW - 21 * DAY else rate
            created += chance.expovariate(daily / DAY)
            thread = f"t{number // 8}"
            kind = "thread" if number % 8 == 0 else "reply"
            author = first_author + chance.randrange(600)
            if kind == "thread":
                threads.append(
                    {
                        "community_id": community,
                        "external_id": thread,
                        "author_id": author,
                        "created_at": int(created),
                        "reply_count": 7,
                        "first_reply_at": int(created + 3600),
                        "last_activity_at": int(created),
                    }
                )
            posts.append(
                {
                    "community_id": community,
                    "external_id": f"p{number}",
                    "thread_external_id": thread,
                    "parent_external_id": None,
                    "kind": kind,
                    "author_id": author,
                    "created_at": int(created),
                    "edited_at": None,
                    "deleted": False,
                    "sentiment": chance.uniform(-1, 1),
                    "keyword_groups": "pay" if number % 13 == 0 else "",
                    "content_hash": "",
                    "url": None,
                    "body": None,
                    "body_expires_at": None,
                    "fetched_at": NOW,
                }
            )
            number += 1
        session.execute(insert(POSTS), posts)
        session.execute(insert(THREADS), threads)
        days = {day_of(start + d * DAY) for d in range(SERIES_DAYS + 1)}
        refresh_days(session, community_id=community, days=days, now=NOW)


def template_snapshots(folder: Path) -> list[CommunitySnapshot]:
    """The ten template communities' snapshots, computed by the real analysis."""
    templates = [(f"template-{n}", SOURCES[n % len(SOURCES)]) for n in range(len(TEMPLATE_RATES))]
    settings = settings_for(templates)
    engine = db.make_engine(f"sqlite:///{folder / 'templates.db'}")
    try:
        db.upgrade(engine)
        for n, ((cid, source), rate) in enumerate(zip(templates, TEMPLATE_RATES, strict=True)):
            fill_template(engine, community=cid, source=source, rate=rate, drop=n in DECLINING)
        snapshots = Snapshots(settings=settings, engine=engine)
        return [snapshots.refresh(c, now=NOW) for c in settings.communities]
    finally:
        engine.dispose()


def service_with(count: int, templates: Sequence[CommunitySnapshot]) -> Service:
    """A service of ``count`` communities with cloned snapshots and polled telemetry."""
    clones = [
        dataclasses.replace(templates[n % len(templates)], community=community_id(n))
        for n in range(count)
    ]
    settings = settings_for([(s.community, s.source) for s in clones])
    service = Service(settings, clock=lambda: NOW)
    snapshots = Snapshots(settings=settings, engine=db.make_engine("sqlite://"))
    service.use_snapshots(snapshots)
    for snapshot in clones:
        snapshots.install(snapshot)
    chance = random.Random(count)
    telemetry = service.telemetry
    for n, community in enumerate(settings.communities):
        source = str(getattr(community, "source", ""))
        telemetry.declare_community(community.id, source, interval=community.interval)
        for _ in range(12):
            telemetry.polls.labels(community=community.id, source=source).inc()
            telemetry.poll_duration.labels(community=community.id, source=source).observe(
                chance.lognormvariate(0.0, 1.2)
            )
        for kind, items in (("thread", 4), ("reply", 30)):
            telemetry.items_ingested.labels(community=community.id, source=source, kind=kind).inc(
                items
            )
        failed = n % 25 == 0
        if failed:
            telemetry.poll_failures.labels(
                community=community.id, source=source, reason="timeout"
            ).inc()
        telemetry.last_success.labels(community=community.id).set(NOW - 60)
        telemetry.source_up.labels(community=community.id).set(0 if failed else 1)
    for host in ("www.reddit.com", "forum.example.org", "hacker-news.firebaseio.com"):
        telemetry.http_requests.labels(host=host, code="200").inc(count * 12)
        telemetry.rate_limit_remaining.labels(host=host).set(80)
    return service


POLLED_BETWEEN_SCRAPES = 0.1
"""Share of the communities polled between two scrapes: 30 s of 5-minute intervals."""
REFRESHED_BETWEEN_SCRAPES = 0.5
"""Share of the snapshots refreshed between two scrapes: 30 s of the 60 s analysis job."""


class Activity:
    """What happens to a service between two scrapes: some polls, some refreshes."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.ids = [c.id for c in service.active_communities()]
        self.polled = 0
        self.refreshed = 0
        self.chance = random.Random(len(self.ids))

    def poll_some(self) -> None:
        """Record the polls of the next tenth of the communities (untimed)."""
        telemetry = self.service.telemetry
        count = max(1, int(len(self.ids) * POLLED_BETWEEN_SCRAPES))
        for n in range(self.polled, self.polled + count):
            community = self.service.active_community(self.ids[n % len(self.ids)])
            assert community is not None
            source = str(getattr(community, "source", ""))
            telemetry.polls.labels(community=community.id, source=source).inc()
            telemetry.poll_duration.labels(community=community.id, source=source).observe(
                self.chance.lognormvariate(0.0, 1.2)
            )
            ingested = telemetry.items_ingested.labels(
                community=community.id, source=source, kind="reply"
            )
            ingested.inc(self.chance.randrange(5))
            telemetry.last_success.labels(community=community.id).set(NOW)
            telemetry.source_up.labels(community=community.id).set(1)
        self.polled += count

    def refresh_some(self) -> tuple[float, int]:
        """Install a fresh snapshot of the next half of the communities; (CPU s, count)."""
        snapshots = self.service.snapshots
        assert snapshots is not None
        count = max(1, int(len(self.ids) * REFRESHED_BETWEEN_SCRAPES))
        fresh = []
        for n in range(self.refreshed, self.refreshed + count):
            latest = snapshots.get(self.ids[n % len(self.ids)])
            assert latest is not None
            fresh.append(dataclasses.replace(latest, computed_at=latest.computed_at + 1))
        started = time.process_time()
        for snapshot in fresh:
            snapshots.install(snapshot)
        self.refreshed += count
        return time.process_time() - started, count


class Asgi:
    """Requests straight into an ASGI app on one event loop: no sockets, no client."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
        return self.loop.run_until_complete(self._get(path, headers or {}))

    async def _get(self, path: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": raw_path,
            "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 9808),
        }
        body: list[bytes] = []
        answer: dict[str, str] = {}
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answer.update((k.decode(), v.decode()) for k, v in message["headers"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        return answer, b"".join(body)

    def cpu(self, path: str, headers: dict[str, str] | None = None) -> float:
        """CPU seconds of one request."""
        started = time.process_time()
        self.get(path, headers)
        return time.process_time() - started

    def close(self) -> None:
        self.loop.close()


def series_count(text: str) -> tuple[int, int]:
    """Samples in an exposition: (community families ``forum_*``, collector health)."""
    community = health = 0
    for family in text_string_to_metric_families(text):
        if family.name.startswith("forum_monitor_"):
            health += len(family.samples)
        else:
            community += len(family.samples)
    return community, health


@dataclasses.dataclass
class Measured:
    metrics_plain_ms: list[float] = dataclasses.field(default_factory=list)
    metrics_gzip_ms: list[float] = dataclasses.field(default_factory=list)
    refresh_ms: list[float] = dataclasses.field(default_factory=list)
    status_ms: list[float] = dataclasses.field(default_factory=list)
    one_ms: list[float] = dataclasses.field(default_factory=list)
    series_ms: list[float] = dataclasses.field(default_factory=list)
    plain_bytes: int = 0
    gzip_bytes: int | None = None
    community_series: float = 0.0
    health_series: float = 0.0
    status_bytes: int = 0


def measure(templates: Sequence[CommunitySnapshot], *, rounds: int = ROUNDS) -> dict[int, Measured]:
    services = {size: service_with(size, templates) for size in SIZES}
    activity = {size: Activity(service) for size, service in services.items()}
    clients = {
        size: Asgi(create_app(service, schedule=False, clock=lambda: NOW))
        for size, service in services.items()
    }
    found = {size: Measured() for size in SIZES}
    try:
        for size, client in clients.items():
            result = found[size]
            _, plain = client.get("/metrics")
            headers, zipped = client.get("/metrics", {"Accept-Encoding": "gzip"})
            result.plain_bytes = len(plain)
            if headers.get("content-encoding") == "gzip":
                result.gzip_bytes = len(zipped)
                assert gzip.decompress(zipped) == plain
            community, health = series_count(plain.decode())
            result.community_series, result.health_series = community / size, health / size
            result.status_bytes = len(client.get("/")[1])
        one = community_id(SIZES[0] // 2)  # every size has it
        for _ in range(rounds):
            for size, client in clients.items():
                result = found[size]
                for encoding, figures in (
                    ("identity", result.metrics_plain_ms),
                    ("gzip", result.metrics_gzip_ms),
                ):
                    activity[size].poll_some()
                    spent, refreshed = activity[size].refresh_some()
                    result.refresh_ms.append(spent * 1000 / refreshed)
                    cpu = client.cpu("/metrics", {"Accept-Encoding": encoding})
                    figures.append(cpu * 1000 / size)
                result.status_ms.append(client.cpu("/") * 1000)
                result.one_ms.append(
                    mean_cpu(lambda c=client: c.cpu(f"/api/v1/communities/{one}")) * 1000
                )
                result.series_ms.append(
                    mean_cpu(lambda c=client: c.cpu(f"/api/v1/communities/{one}/series")) * 1000
                )
    finally:
        for client in clients.values():
            client.close()
    return found


def mean_cpu(call: Callable[[], float], calls: int = API_CALLS) -> float:
    return sum(call() for _ in range(calls)) / calls


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def read_rows(rounds: int = ROUNDS) -> list[Row]:
    """Measure every size; one row per measure: name, a cell per size, target, result."""
    with tempfile.TemporaryDirectory() as folder:
        templates = template_snapshots(Path(folder))
    found = measure(templates, rounds=rounds)
    largest, smallest = found[SIZES[-1]], found[SIZES[0]]

    def cells(pick: Callable[[Measured], str]) -> tuple[str, ...]:
        return tuple(pick(found[size]) for size in SIZES)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    plain_ms, gzip_ms = median(largest.metrics_plain_ms), median(largest.metrics_gzip_ms)
    one_ratio = median(largest.one_ms) / median(smallest.one_ms)
    series_ratio = median(largest.series_ms) / median(smallest.series_ms)
    return [
        (
            "/metrics CPU per community per scrape, plain",
            *cells(lambda m: f"{median(m.metrics_plain_ms):.3f} ms"),
            f"<= {METRICS_BUDGET_MS} ms at {SIZES[-1]:,}",
            verdict(plain_ms <= METRICS_BUDGET_MS),
        ),
        (
            "/metrics CPU per community per scrape, gzip asked",
            *cells(lambda m: f"{median(m.metrics_gzip_ms):.3f} ms"),
            f"<= {METRICS_BUDGET_MS} ms at {SIZES[-1]:,}",
            verdict(gzip_ms <= METRICS_BUDGET_MS),
        ),
        (
            "render at refresh, CPU per snapshot installed",
            *cells(lambda m: f"{median(m.refresh_ms):.3f} ms"),
            "once per refresh, not per scrape",
            "info",
        ),
        ("/metrics bytes, plain", *cells(lambda m: f"{m.plain_bytes:,}"), "", "info"),
        (
            "/metrics bytes, gzip",
            *cells(lambda m: "not served" if m.gzip_bytes is None else f"{m.gzip_bytes:,}"),
            "served when asked",
            verdict(largest.gzip_bytes is not None),
        ),
        (
            "series per community: community gauges",
            *cells(lambda m: f"{m.community_series:.1f}"),
            "",
            "info",
        ),
        (
            "series per community: collector health",
            *cells(lambda m: f"{m.health_series:.1f}"),
            "",
            "info",
        ),
        (
            "status page bytes",
            *cells(lambda m: f"{m.status_bytes:,}"),
            f"< {STATUS_PAGE_LIMIT:,} at {SIZES[-1]:,}",
            verdict(largest.status_bytes < STATUS_PAGE_LIMIT),
        ),
        ("status page CPU", *cells(lambda m: f"{median(m.status_ms):.1f} ms"), "", "info"),
        (
            "GET /api/v1/communities/{id} CPU",
            *cells(lambda m: f"{median(m.one_ms):.3f} ms"),
            f"{SIZES[-1]:,} vs {SIZES[0]}: ratio {one_ratio:.2f} <= {API_RATIO_LIMIT}",
            verdict(one_ratio <= API_RATIO_LIMIT),
        ),
        (
            "GET /api/v1/communities/{id}/series CPU",
            *cells(lambda m: f"{median(m.series_ms):.3f} ms"),
            f"{SIZES[-1]:,} vs {SIZES[0]}: ratio {series_ratio:.2f} <= {API_RATIO_LIMIT}",
            verdict(series_ratio <= API_RATIO_LIMIT),
        ),
    ]


def print_table(rows: Sequence[Row]) -> None:
    header = ("measure", *(f"{size:,} communities" for size in SIZES), "target", "result")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> bool:
    print(
        f"reading at scale: clones of {len(TEMPLATE_RATES)} analysed template communities, "
        f"CPU per request (time.process_time), median of {ROUNDS} interleaved rounds"
    )
    rows = read_rows()
    print_table(rows)
    return all(row[-1] != "FAIL" for row in rows)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
