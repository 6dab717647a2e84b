"""A community that has never been polled has unknown activity, not zero activity.

The whole service against a fake Reddit on 127.0.0.1: ``gig`` polls fine, ``broken``
answers 503 to every request until the fault is cleared. Every expected count follows
from the posts the test adds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor.api import create_app
from monitor.config import settings_from_mapping
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault
from monitor.service import Service
from tests.support import service_config

HOUR = 3600
WINDOWS = ("1d", "7d", "28d")
ACTIVITY = ("forum_posts", "forum_threads_started", "forum_active_participants")


@pytest.fixture
def server() -> Iterator[tuple[FakeReddit, FakeForumServer]]:
    fake = FakeReddit()
    now = time.time()
    first = fake.add_thread("gigwork", created=now - 3 * HOUR, author="a1", title="pay cut again")
    fake.add_thread("gigwork", created=now - 2 * HOUR, author="a2", title="Schedule")
    fake.add_reply(first, created=now - HOUR, author="a3")
    down = fake.add_thread("broken", created=now - 5 * HOUR, author="b1", title="pay cut too")
    fake.add_reply(down, created=now - 4 * HOUR, author="b2")
    with fake.server() as running:
        yield fake, running


def open_service(server: FakeForumServer, tmp_path: Path) -> Service:
    communities = [
        {"id": name, "source": "reddit", "subreddit": sub, "base_url": server.base_url}
        for name, sub in (("gig", "gigwork"), ("broken", "broken"))
    ]
    data = service_config(tmp_path, [{**c, "history_days": 2} for c in communities])
    data["keywords"] = {"pay": ["pay cut"]}
    return Service(settings_from_mapping(data), registry=CollectorRegistry())


def sample(service: Service, metric: str, community: str, **labels: str) -> float | None:
    found = {"community": community, "source": "reddit", **labels}
    return service.registry.get_sample_value(metric, found)


async def test_never_polled_community_exports_no_activity_until_it_polls(
    server: tuple[FakeReddit, FakeForumServer], tmp_path: Path
) -> None:
    _, fake_server = server
    fake_server.inject(Fault("status", path_prefix="/r/broken/", status=503, count=1000))
    service = open_service(fake_server, tmp_path)
    await service.open()
    try:
        outcomes = {o.community: o.outcome for o in await service.poll_all()}
        assert outcomes == {"gig": "ok", "broken": "http_5xx"}
        await service.analyse()  # the scheduler's analysis job

        for window in WINDOWS:
            for metric in ACTIVITY:
                assert sample(service, metric, "broken", window=window) is None, (metric, window)
            pay = {"window": window, "keyword_group": "pay"}
            assert sample(service, "forum_keyword_posts", "broken", **pay) is None
            # that nothing was covered is a fact, and stays
            assert sample(service, "forum_coverage_ratio", "broken", window=window) == 0.0
        # the community that polled: a1, a2 start threads, a3 replies, all in the last day
        assert sample(service, "forum_posts", "gig", window="1d") == 3
        assert sample(service, "forum_threads_started", "gig", window="1d") == 2
        assert sample(service, "forum_active_participants", "gig", window="1d") == 3
        assert sample(service, "forum_keyword_posts", "gig", window="7d", keyword_group="pay") == 1

        fake_server.clear()
        broken = next(c for c in service.settings.communities if c.id == "broken")
        assert (await service.poll(broken)).outcome == "ok"
        # b1's thread and b2's reply, 5 and 4 hours ago
        assert sample(service, "forum_posts", "broken", window="1d") == 2
        assert sample(service, "forum_threads_started", "broken", window="28d") == 1
        assert sample(service, "forum_active_participants", "broken", window="7d") == 2
        pay = {"window": "1d", "keyword_group": "pay"}
        assert sample(service, "forum_keyword_posts", "broken", **pay) == 1
        assert sample(service, "forum_coverage_ratio", "broken", window="1d") == 1.0
    finally:
        await service.stop()


async def test_api_and_status_page_show_unknown_not_zero(
    server: tuple[FakeReddit, FakeForumServer], tmp_path: Path
) -> None:
    _, fake_server = server
    fake_server.inject(Fault("status", path_prefix="/r/broken/", status=503, count=1000))
    service = open_service(fake_server, tmp_path)
    await service.open()
    try:
        await service.poll_all()
        await service.analyse()
        app = create_app(service, schedule=False)  # lifespan not run: the service is open
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as http:
            broken = (await http.get("/api/v1/communities/broken")).json()
            gig = (await http.get("/api/v1/communities/gig")).json()
            series = (await http.get("/api/v1/communities/broken/series?days=3")).json()
            table = (await http.get("/")).text
            page = (await http.get("/community/broken")).text
        assert broken["windows"] == {"1d": None, "7d": None, "28d": None}
        assert broken["coverage"] == {"1d": 0.0, "7d": 0.0, "28d": 0.0}
        assert broken["last_error"] is not None and broken["last_success_at"] is None
        assert gig["windows"]["1d"]["posts"] == 3
        assert [p["value"] for p in series["points"]] == [None, None, None]

        section = re.search(r'<section[^>]*data-community="broken".*?</section>', page, re.S)
        assert section is not None
        posts = re.search(r"<dt>Posts, 7 days</dt><dd>(.*?)</dd>", section.group(0))
        assert posts is not None and "unknown" in posts.group(1)
        assert ">0<" not in section.group(0)
        row = re.search(r'<tr data-community="broken".*?</tr>', table)
        assert row is not None
        assert row.group(0).count(">unknown<") == 2  # participants and posts, 7 days
        assert ">0<" not in row.group(0)
    finally:
        await service.stop()
