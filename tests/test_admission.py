"""Admission of polls: ``serve`` runs at most ``max_concurrent_polls`` at once, the rest
wait in a queue; a community waiting is not queued twice; slots are shared between
hosts; first runs of communities polled before are spread over their interval.

The fake forum here holds every request until the test releases it, so what runs
at once can be counted at the server, whatever the service believes it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.fakeforum.feeds import FakeFeeds
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request, Router
from monitor.service import Service, host_of
from monitor.sources import SOURCES
from monitor.store import db
from monitor.store.models import Community, PollState
from tests.support import service_config

NOW = int(time.time())


class HeldFeeds:
    """``count`` one-entry feeds whose requests wait for ``gate`` (or ``timeout``)."""

    def __init__(self, count: int) -> None:
        self.feeds = FakeFeeds()
        for n in range(count):
            path = f"/f{n}.rss"
            self.feeds.add_feed(path)
            self.feeds.add_entry(
                path, guid=f"e{n}", title=f"Entry {n}", published=NOW - 3600, author="someone"
            )
        self.router = Router()
        self.feeds.register(self.router)
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests: Counter[str] = Counter()
        self.server = FakeForumServer(self)

    def __call__(self, request: Request) -> FakeResponse:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.requests[request.path] += 1
        try:
            self.gate.wait(timeout=60)
            return self.router(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def communities(self, count: int, *, interval: str) -> list[dict[str, Any]]:
        base = self.server.base_url
        return [
            {"id": f"f{n}", "source": "rss", "url": f"{base}/f{n}.rss", "interval": interval}
            for n in range(count)
        ]


@pytest.fixture
def held() -> Iterator[Callable[[int], HeldFeeds]]:
    made: list[HeldFeeds] = []

    def make(count: int) -> HeldFeeds:
        forum = HeldFeeds(count)
        forum.server.start()
        made.append(forum)
        return forum

    yield make
    for forum in made:
        forum.gate.set()
        forum.server.stop()


async def until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


def succeeded(service: Service, community: str) -> bool:
    value = service.registry.get_sample_value(
        "forum_monitor_last_success_timestamp_seconds", {"community": community}
    )
    return bool(value)


def held_settings(tmp_path: Path, communities: list[dict[str, Any]], limit: int) -> Any:
    data = service_config(tmp_path, communities, read_timeout="60s", total_timeout="90s")
    data["max_concurrent_polls"] = limit
    return settings_from_mapping(data)


async def test_serve_runs_at_most_max_concurrent_polls_and_polls_every_community(
    held: Callable[[int], HeldFeeds], tmp_path: Path
) -> None:
    """Thirty communities due at once with a bound of three: three requests reach the
    server, the rest wait in the service; once released, every community is polled
    once, and never more than three at a time."""
    count, limit = 30, 3
    forum = held(count)
    settings = held_settings(tmp_path, forum.communities(count, interval="1h"), limit)
    service = Service(settings, registry=CollectorRegistry())
    await service.open()
    try:
        service.schedule()
        await until(lambda: forum.in_flight >= limit, timeout=20, what="the first polls arrive")
        await asyncio.sleep(2.0)  # long enough for any poll started beyond the bound to arrive
        assert forum.in_flight == limit
        forum.gate.set()
        await until(
            lambda: all(succeeded(service, f"f{n}") for n in range(count)),
            timeout=60,
            what="every community is polled",
        )
    finally:
        await service.stop()
    assert forum.most_in_flight == limit
    assert forum.requests == {f"/f{n}.rss": 1 for n in range(count)}


def slot_in_interval(community_id: str, interval: float) -> float:
    """Where in each interval a community's polls fall: a hash of its id, as documented."""
    digest = hashlib.sha256(community_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def first_runs(service: Service) -> dict[str, float]:
    assert service.scheduler is not None
    return {
        job.id.removeprefix("poll:"): job.next_run_time.timestamp()
        for job in service.scheduler.get_jobs()
        if job.id.startswith("poll:")
    }


async def test_first_runs_are_spread_over_the_interval_and_the_same_after_a_restart(
    tmp_path: Path,
) -> None:
    """Communities polled before start at a fixed slot of their interval (a hash of the
    id), so two starts a while apart put each at the same place and 200 of them are
    spread over the five minutes; communities never polled go first."""
    interval = 300.0
    polled = [f"c{n}" for n in range(200)]
    fresh = [f"new{n}" for n in range(5)]
    communities = [
        {"id": name, "source": "rss", "url": f"http://127.0.0.1:9/{name}.rss", "interval": "5m"}
        for name in polled + fresh
    ]
    settings = settings_from_mapping(service_config(tmp_path, communities))
    engine = db.make_engine(settings.resolved_database_url())
    db.upgrade(engine)
    with db.session_scope(engine) as session:
        for name in polled:
            session.add(Community(id=name, source="rss", created_at=NOW - 86400))
            session.add(PollState(community_id=name, last_attempt_at=NOW - 60))
    engine.dispose()

    starts = [float(NOW), NOW + 1234.5]
    seen: list[dict[str, float]] = []
    for start in starts:
        service = Service(settings, registry=CollectorRegistry(), clock=lambda at=start: at)
        await service.open()
        service.schedule()
        seen.append(first_runs(service))
        await service.stop()  # before any job runs: nothing is polled

    for start, runs in zip(starts, seen, strict=True):
        for name in fresh:
            assert runs[name] == pytest.approx(start, abs=1.0)
        for name in polled:
            wait = runs[name] - start
            assert 0 <= wait < interval
            slot = slot_in_interval(name, interval)
            assert (runs[name] - slot) % interval == pytest.approx(0, abs=1e-3) or (
                runs[name] - slot
            ) % interval == pytest.approx(interval, abs=1e-3)
    bins = Counter(int((seen[0][name] - starts[0]) // 30) for name in polled)
    assert set(bins) == set(range(10)), bins  # every 30 s of the interval has some
    assert max(bins.values()) <= 2 * len(polled) / 10, bins  # none holds twice its share


class Polls:
    """A stand-in for the poller: each poll waits until the test ends it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._release: dict[str, asyncio.Event] = {}

    async def run(self, community: Any) -> Any:
        from monitor.poller import PollOutcome

        self.started.append(community.id)
        release = self._release.setdefault(community.id, asyncio.Event())
        await release.wait()
        release.clear()
        return PollOutcome(community.id, "rss", "ok")

    def end(self, community_id: str) -> None:
        self._release.setdefault(community_id, asyncio.Event()).set()


def feed(name: str, host: str) -> Any:
    return settings_from_mapping(
        {"communities": [{"id": name, "source": "rss", "url": f"https://{host}/{name}.rss"}]}
    ).communities[0]


def queue(limit: int, polls: Polls, registry: CollectorRegistry | None = None) -> Any:
    from monitor.admission import PollQueue
    from monitor.telemetry import Telemetry

    return PollQueue(
        limit=limit,
        run=polls.run,
        host_of=lambda community: community.url.split("/")[2],
        telemetry=Telemetry(registry or CollectorRegistry()),
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_community_waiting_is_not_queued_twice_and_one_running_is_deferred() -> None:
    registry = CollectorRegistry()
    polls = Polls()
    admitted = queue(1, polls, registry)
    busy, waiting = feed("busy", "a.example"), feed("waiting", "a.example")
    running = admitted.submit(busy)
    first = admitted.submit(waiting)
    again = admitted.submit(waiting)  # its next interval came while it still waits
    await settle()
    assert again is first
    assert (admitted.running, admitted.waiting) == (1, 1)
    deferred = admitted.submit(busy)  # due again while it runs
    assert deferred.done() and deferred.result().outcome == "deferred"
    polls.end("busy")
    assert (await running).outcome == "ok"
    await settle()
    polls.end("waiting")
    assert (await first).outcome == "ok"
    assert polls.started == ["busy", "waiting"]  # each polled once
    coalesced = {
        name: registry.get_sample_value("forum_monitor_polls_coalesced_total", {"community": name})
        for name in ("busy", "waiting")
    }
    assert coalesced == {"busy": 1.0, "waiting": 1.0}


async def test_slots_are_shared_between_hosts_however_the_queue_was_filled() -> None:
    """Ten polls of a slow host are asked for before ten of a quick one; with four
    slots, the quick host still gets two at once, and while its polls wait the slow host
    never holds more than its two, however quickly the quick host's polls end."""
    polls = Polls()
    admitted = queue(4, polls)
    slow = [feed(f"slow{n}", "slow.example") for n in range(10)]
    quick = [feed(f"quick{n}", "quick.example") for n in range(10)]
    futures = [admitted.submit(c) for c in slow + quick]
    await settle()
    assert polls.started == ["slow0", "quick0", "slow1", "quick1"]
    for n in range(10):  # the quick host's polls end one by one, the slow host's never
        polls.end(f"quick{n}")
        await settle()
        quick_waiting = max(0, 10 - (n + 3))  # two started at first, one more per end
        slow_started = sum(name.startswith("slow") for name in polls.started)
        if quick_waiting or n == 7:  # (ending quick7 started quick9, the last)
            assert slow_started == 2, n
        else:  # nothing of the quick host waits: the slow host takes the free slot
            assert slow_started == 2 + (n - 7), n
    assert sum(name.startswith("quick") for name in polls.started) == 10
    assert sum(name.startswith("slow") for name in polls.started) == 4
    for n in range(10):
        polls.end(f"slow{n}")
        await settle()
    assert {f.result().outcome for f in futures} == {"ok"}
    assert sorted(polls.started) == sorted(c.id for c in slow + quick)


async def test_polls_still_waiting_at_shutdown_never_start() -> None:
    polls = Polls()
    admitted = queue(1, polls)
    first = admitted.submit(feed("first", "a.example"))
    second = admitted.submit(feed("second", "a.example"))
    await settle()
    admitted.close()
    assert second.done() and second.result().outcome == "cancelled"
    polls.end("first")
    assert (await first).outcome == "ok"
    await settle()
    assert polls.started == ["first"]
    late = admitted.submit(feed("late", "a.example"))
    assert late.result().outcome == "cancelled"


EVERY_KIND = [
    {"id": "reddit", "source": "reddit", "subreddit": "gigwork"},
    {"id": "hn-site", "source": "hackernews"},
    {"id": "hn-query", "source": "hackernews", "query": "gig work"},
    {"id": "discourse", "source": "discourse", "base_url": "https://forum.example"},
    {"id": "rss", "source": "rss", "url": "https://feeds.example/news.rss"},
    {"id": "mastodon", "source": "mastodon", "base_url": "https://social.example", "hashtag": "x"},
    {"id": "github", "source": "github", "repository": "octo/project"},
    {"id": "stackexchange", "source": "stackexchange", "site": "freelancing"},
    {"id": "lemmy", "source": "lemmy", "base_url": "https://lemmy.example", "community": "tech"},
]


async def test_every_source_kind_names_the_host_its_polls_talk_to(tmp_path: Path) -> None:
    """Slots are shared by the host ``host_of`` names, so it must be the host a poll's
    requests go to: one poll of a community of every kind (each on a host of its own,
    every request answered 503) sends requests to exactly the hosts named."""
    assert {c["source"] for c in EVERY_KIND} == set(SOURCES), "a kind without a case here"
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def unavailable(request: httpx.Request) -> httpx.Response:
        with lock:
            seen[request.url.host] += 1
        return httpx.Response(503, text="down for the test")

    data = service_config(tmp_path, EVERY_KIND, max_retries=0)
    settings = settings_from_mapping(data)
    named = {c.id: host_of(c, settings) for c in settings.communities}
    assert named == {
        "reddit": "www.reddit.com",
        "hn-site": "hacker-news.firebaseio.com",
        "hn-query": "hn.algolia.com",
        "discourse": "forum.example",
        "rss": "feeds.example",
        "mastodon": "social.example",
        "github": "api.github.com",
        "stackexchange": "api.stackexchange.com",
        "lemmy": "lemmy.example",
    }
    data["http"]["rate_per_minute"] = {host: 100000 for host in named.values()}
    service = Service(
        settings_from_mapping(data),
        registry=CollectorRegistry(),
        transport=httpx.MockTransport(unavailable),
    )
    await service.open()
    try:
        outcomes = await service.poll_all()
    finally:
        await service.stop()
    assert {o.community: o.outcome for o in outcomes} == dict.fromkeys(named, "http_5xx")
    assert set(seen) == set(named.values())
