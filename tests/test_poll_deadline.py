"""A poll has a deadline: a server that answers slowly cannot hold one poll for an hour.

A server answering each request just under ``total_timeout`` kept one poll going for
pages x 60 s. Here every request of the fake forum takes 0.5 s and the poll's
deadline is 1 s: each adapter stops asking for pages once the deadline has passed,
the poll commits what it fetched ("ok"), its coverage claims only what it saw (the
property of ``tests/test_coverage_truth.py``), and once the server is quick again the
next polls finish the walk with every post in ``history_days`` stored once (Reddit, whose
listings cannot be resumed, moves on and leaves what it did not list out of coverage).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.fakeforum.server import FakeForumServer, Fault
from monitor.service import Service
from monitor.sources import hackernews
from tests.support import service_config, stored_posts
from tests.test_coverage_truth import (
    DAY,
    HOUR,
    PLATFORMS,
    START,
    Platform,
    Sim,
    add_between,
    serving,
    unseen_covered,
)

SLOW = Fault("delay", seconds=0.5, count=10_000)


@pytest.fixture(params=sorted(name for name in PLATFORMS if name != "rss"))
def paged(request: pytest.FixtureRequest) -> Iterator[tuple[Platform, FakeForumServer]]:
    """Every source that pages (a feed is one request, which total_timeout bounds)."""
    yield from serving(str(request.param))


async def test_a_slow_server_cannot_hold_a_poll_past_its_deadline(
    paged: tuple[Platform, FakeForumServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, server = paged
    # a keyword scope reads 100 hits a page: smaller pages, so the walk takes several
    monkeypatch.setattr(hackernews.HackerNews, "hits_per_page", 25)
    sim = Sim()
    add_between(made, sim, START - 15 * DAY, START - HOUR, 260)
    in_history = {key for key, at in made.truth().items() if at >= START - 10 * DAY}
    community = {**made.community, "history_days": 10}
    settings = settings_from_mapping(
        service_config(tmp_path, [community], poll_deadline="1s", read_timeout="5s")
    )
    service = Service(settings, registry=CollectorRegistry(), clock=lambda: sim.clock)
    await service.open()
    try:
        target = settings.communities[0]
        server.inject(SLOW)
        first = await service.poll(target)
        assert first.outcome == "ok"
        assert service.engine is not None
        stored, _ = stored_posts(service.engine, target.id)
        # cut by the deadline: what it fetched is committed (the whole-site walk reads
        # oldest first, so what it got may all lie before history_days)
        assert stored < len(in_history) and first.requests >= 1
        assert unseen_covered(service, made, until=sim.clock) == []
        server.clear()
        requests = first.requests
        for _ in range(6):  # quick again: the walk goes on where the deadline stopped it
            sim.clock += 600
            outcome = await service.poll(target)
            assert outcome.outcome in ("ok", "not_modified")
            assert unseen_covered(service, made, until=sim.clock) == []
            requests += outcome.requests
        # the deadline stopped the first poll with most of the walk still to do (without
        # it, the first poll walks every page and the later ones ask one page each)
        assert requests - first.requests > first.requests
        rows, distinct = stored_posts(service.engine, target.id)
        assert rows == distinct  # nothing twice
        if made.resumes:  # the cut walk went on: all of history_days is in
            assert rows >= len(in_history)
    finally:
        await service.stop()
