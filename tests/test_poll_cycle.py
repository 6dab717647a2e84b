"""Whole polls through the service: fake forums on 127.0.0.1 -> adapters -> ingest -> store.

Three communities (Reddit, Discourse, an RSS feed) share one fake server. Every
expected count follows from what the test adds to the fakes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from monitor.config import Settings, settings_from_mapping
from monitor.fakeforum.discourse import FakeDiscourse
from monitor.fakeforum.feeds import FakeFeeds
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.service import Service
from monitor.store.models import PollRun
from tests.support import FAULT_HTTP, FAULTS, service_config, stored_posts

NOW = int(time.time())
HOUR = 3600


class Forums:
    def __init__(self) -> None:
        self.reddit = FakeReddit()
        self.reddit.add_subreddit("gigwork")
        self.discourse = FakeDiscourse(prefix="/forum")
        self.feeds = FakeFeeds()
        self.feeds.add_feed("/news.rss", limit=200)
        router = Router()
        self.reddit.register(router)
        self.discourse.register(router)
        self.feeds.register(router)
        self.server = FakeForumServer(router)

    def add_round(self, start: int, count: int) -> None:
        """``count`` threads with one reply each on Reddit and Discourse, ``count`` feed entries."""
        for n in range(count):
            at = start + n * 60
            thread = self.reddit.add_thread(
                "gigwork", created=at, author=f"r{n % 7}", title=f"pay cut round {start} #{n}"
            )
            self.reddit.add_reply(thread, created=at + 30, author=f"r{(n + 1) % 7}")
            post = self.discourse.add_thread(
                title=f"Topic {start}-{n}",
                author=f"d{n % 5}",
                created_at=at,
                text="Unpaid onboarding again",
            )
            self.discourse.add_reply(
                topic_id=post.topic_id,
                author=f"d{(n + 2) % 5}",
                created_at=at + 30,
                text="Same here, it is awful",
            )
            self.feeds.add_entry(
                "/news.rss",
                guid=f"news-{start}-{n}",
                title=f"News {n}",
                published=at,
                author="editor",
                summary="<p>Update</p>",
            )


def config(base_url: str, tmp_path: Path, **http: Any) -> dict[str, Any]:
    data = service_config(
        tmp_path,
        [
            {
                "id": "gig",
                "source": "reddit",
                "subreddit": "gigwork",
                "base_url": base_url,
                "history_days": 2,
            },
            {
                "id": "forum",
                "source": "discourse",
                "base_url": base_url + "/forum",
                "history_days": 2,
            },
            {"id": "news", "source": "rss", "url": base_url + "/news.rss", "history_days": 2},
        ],
        **http,
    )
    data["keywords"] = {"pay": ["pay cut"], "onboarding": ["unpaid onboarding"]}
    return data


@pytest.fixture
def forums() -> Iterator[Forums]:
    forums = Forums()
    with forums.server:
        yield forums


def stored(service: Service, community: str) -> tuple[int, int]:
    """(posts, distinct external ids) stored for ``community``."""
    assert service.engine is not None
    return stored_posts(service.engine, community)


async def open_service(settings: Settings) -> Service:
    service = Service(settings, registry=CollectorRegistry())
    await service.open()
    return service


async def test_no_author_name_reaches_the_store(forums: Forums, tmp_path: Path) -> None:
    """Authors are stored only as keyed pseudonyms, whichever source they come from."""
    thread = forums.reddit.add_thread("gigwork", created=NOW - 600, author="reddit_alice")
    forums.reddit.add_reply(thread, created=NOW - 500, author="reddit_bob")
    post = forums.discourse.add_thread(title="Pay", author="discourse_carol", created_at=NOW - 600)
    forums.discourse.add_reply(topic_id=post.topic_id, author="discourse_dan", created_at=NOW - 500)
    forums.feeds.add_entry(
        "/news.rss", guid="n-1", title="News", published=NOW - 600, author="feed_erin"
    )
    # feeds whose links name the author, Mastodon and fediverse style, as guid and link
    for link, author in [
        ("https://social.example/@feed_frank/1101", "feed_frank"),
        ("https://forum.example/users/feed_gina/statuses/7", "feed_gina"),
        ("https://feed_hal.blog.example/2026/a-post", "feed_hal"),
    ]:
        forums.feeds.add_entry(
            "/news.rss", guid=link, link=link, title="t", published=NOW - 400, author=author
        )
    service = await open_service(settings_from_mapping(config(forums.server.base_url, tmp_path)))
    try:
        polled = {o.community: o.new_items for o in await service.poll_all()}
        assert polled == {"gig": 2, "forum": 2, "news": 4}
    finally:
        await service.stop()
    with sqlite3.connect(tmp_path / "store.db") as db:
        dump = "\n".join(db.iterdump())
    assert dump.count('INSERT INTO "posts"') == 8
    names = ("reddit_alice", "reddit_bob", "discourse_carol", "discourse_dan", "feed_erin")
    names += ("feed_frank", "feed_gina", "feed_hal")  # not in a link, an id or a cursor
    assert [name for name in names if name in dump] == []


async def test_poll_add_poll_gets_exactly_the_new_items(forums: Forums, tmp_path: Path) -> None:
    forums.add_round(NOW - 10 * HOUR, 5)
    service = await open_service(settings_from_mapping(config(forums.server.base_url, tmp_path)))
    try:
        first = {o.community: o for o in await service.poll_all()}
        assert {c: o.outcome for c, o in first.items()} == {
            "gig": "ok",
            "forum": "ok",
            "news": "ok",
        }
        # 5 threads + 5 replies on reddit and discourse; 5 feed entries (threads)
        assert {c: o.new_items for c, o in first.items()} == {"gig": 10, "forum": 10, "news": 5}

        idle = {o.community: o for o in await service.poll_all()}
        assert {c: o.new_items for c, o in idle.items()} == {"gig": 0, "forum": 0, "news": 0}
        assert idle["gig"].requests == 2  # one per endpoint: new.json, comments.json
        assert idle["forum"].requests == 1
        assert idle["news"].outcome == "not_modified"

        forums.add_round(NOW - 2 * HOUR, 3)
        second = {o.community: o for o in await service.poll_all()}
        assert {c: o.new_items for c, o in second.items()} == {"gig": 6, "forum": 6, "news": 3}
        assert stored(service, "gig") == (16, 16)
        assert stored(service, "forum") == (16, 16)
        assert stored(service, "news") == (8, 8)

        registry = service.registry
        assert (
            registry.get_sample_value(
                "forum_monitor_items_ingested_total",
                {"community": "gig", "source": "reddit", "kind": "reply"},
            )
            == 8
        )
        assert (
            registry.get_sample_value(
                "forum_monitor_polls_total", {"community": "news", "source": "rss"}
            )
            == 3
        )
        assert registry.get_sample_value("forum_monitor_source_up", {"community": "forum"}) == 1
        # the 7d window counts every post made in the last 10 hours
        assert (
            registry.get_sample_value(
                "forum_posts", {"community": "gig", "source": "reddit", "window": "7d"}
            )
            == 16
        )
        assert (
            registry.get_sample_value(
                "forum_keyword_posts",
                {
                    "community": "forum",
                    "source": "discourse",
                    "window": "1d",
                    "keyword_group": "onboarding",
                },
            )
            == 8
        )
    finally:
        await service.stop()


async def test_faults_lose_nothing_and_duplicate_nothing(forums: Forums, tmp_path: Path) -> None:
    forums.add_round(NOW - 10 * HOUR, 4)
    service = await open_service(settings_from_mapping(config(forums.server.base_url, tmp_path)))
    try:
        await service.poll_all()
        forums.add_round(NOW - 3 * HOUR, 60)  # 120 new reddit items: more than one page
        server = forums.server
        server.inject(
            Fault("status", path_prefix="/r/gigwork/comments", status=503, count=2)
        )  # max_retries=1: both tries
        server.inject(Fault("truncate", path_prefix="/forum/posts.json", count=1))
        server.inject(Fault("html", path_prefix="/news.rss", count=1))
        failed = {o.community: o.outcome for o in await service.poll_all()}
        assert failed == {"gig": "http_5xx", "forum": "malformed", "news": "malformed"}
        registry = service.registry
        assert (
            registry.get_sample_value(
                "forum_monitor_poll_failures_total",
                {"community": "gig", "source": "reddit", "reason": "http_5xx"},
            )
            == 1
        )
        assert registry.get_sample_value("forum_monitor_source_up", {"community": "gig"}) == 0
        assert stored(service, "gig") == (8, 8)  # nothing of the failed poll was written

        server.inject(Fault("reset", path_prefix="/r/gigwork/new", count=2))
        again = {o.community: o.outcome for o in await service.poll_all()}
        assert again == {"gig": "connect", "forum": "ok", "news": "ok"}

        recovered = {o.community: o for o in await service.poll_all()}
        assert recovered["gig"].outcome == "ok"
        assert recovered["gig"].new_items == 120
        assert stored(service, "gig") == (128, 128)
        assert stored(service, "forum") == (128, 128)
        assert stored(service, "news") == (64, 64)
        assert registry.get_sample_value("forum_monitor_source_up", {"community": "gig"}) == 1
        assert service.engine is not None
        with Session(service.engine) as session:
            outcomes = session.exec(
                select(PollRun.outcome).where(PollRun.community_id == "gig").order_by(PollRun.id)  # type: ignore[arg-type]
            ).all()
        assert outcomes == ["ok", "http_5xx", "connect", "ok"]
    finally:
        await service.stop()


def test_poll_once_json_lines(forums: Forums, tmp_path: Path) -> None:
    forums.add_round(NOW - 5 * HOUR, 2)
    settings = config(forums.server.base_url, tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(to_toml(settings))
    run = subprocess.run(
        [sys.executable, "-m", "monitor", "poll-once", "--config", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["community"] for line in lines] == ["gig", "forum", "news"]
    for line in lines:
        assert {"community", "new_items", "requests", "outcome"} <= set(line)
    assert [(line["new_items"], line["outcome"]) for line in lines] == [
        (4, "ok"),
        (4, "ok"),
        (2, "ok"),
    ]
    # reddit: new + comments; discourse: the page of 4 posts, then the empty page that ends
    # a first poll; the feed: one GET
    assert [line["requests"] for line in lines] == [2, 2, 1]


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer for the config dicts above (tables, arrays of tables, scalars)."""
    scalars, tables, arrays = [], [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            arrays.append((key, value))
        else:
            scalars.append(f"{json.dumps(key)} = {json.dumps(value)}")
    text = "\n".join(scalars) + "\n"
    for key, table in tables:
        name = f"{prefix}{key}"
        inline = {k: v for k, v in table.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        text += f"[{name}]\n" + to_toml(inline)
        for sub, value in nested.items():
            pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
            text += f"{json.dumps(sub)} = {{ {pairs} }}\n"
    for key, items in arrays:
        for item in items:
            text += f"[[{prefix}{key}]]\n" + to_toml(item)
    return text


async def test_missing_adapter_is_a_counted_failure_that_spares_the_others(
    forums: Forums, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.poller

    forums.add_round(NOW - 5 * HOUR, 1)
    without_rss = {k: v for k, v in monitor.poller.SOURCES.items() if k != "rss"}
    monkeypatch.setattr(monitor.poller, "SOURCES", without_rss)
    service = await open_service(settings_from_mapping(config(forums.server.base_url, tmp_path)))
    try:
        outcomes = {o.community: o.outcome for o in await service.poll_all()}
        assert outcomes == {"gig": "ok", "forum": "ok", "news": "unknown_source"}
        assert (
            service.registry.get_sample_value(
                "forum_monitor_poll_failures_total",
                {"community": "news", "source": "rss", "reason": "unknown_source"},
            )
            == 1
        )
        assert (
            service.registry.get_sample_value("forum_monitor_source_up", {"community": "news"}) == 0
        )
    finally:
        await service.stop()


@pytest.mark.parametrize(("fault", "reason"), FAULTS, ids=[r for _, r in FAULTS])
async def test_every_fault_is_counted_then_nothing_lost_or_duplicated(
    forums: Forums, tmp_path: Path, fault: Fault, reason: str
) -> None:
    """Each fault on every source: typed, counted by reason; after it clears, every item once."""
    forums.add_round(NOW - 10 * HOUR, 3)
    data = config(forums.server.base_url, tmp_path, **FAULT_HTTP)
    service = await open_service(settings_from_mapping(data))
    try:
        await service.poll_all()
        forums.add_round(NOW - 5 * HOUR, 4)
        for prefix in ("/r/gigwork/new", "/forum/posts.json", "/news.rss"):
            forums.server.inject(replace(fault, path_prefix=prefix))
        failed = {o.community: o.outcome for o in await service.poll_all()}
        # a feed cut short still parses: its entries are read, the last one held back
        # until a whole body arrives (see monitor/sources/feed.py), so that poll is "ok"
        partial_feed = fault.kind == "truncate"
        assert failed == {"gig": reason, "forum": reason, "news": "ok" if partial_feed else reason}
        sources = [("gig", "reddit"), ("forum", "discourse")]
        for community, source in sources if partial_feed else [*sources, ("news", "rss")]:
            labels = {"community": community, "source": source, "reason": reason}
            assert (
                service.registry.get_sample_value("forum_monitor_poll_failures_total", labels) == 1
            )
        if reason == "rate_limited":
            # the server asked for 3 s: a poll before then is deferred, never sent
            sent = len(forums.server.requests)
            deferred = {o.community: o.outcome for o in await service.poll_all()}
            assert set(deferred.values()) == {"deferred"}
            assert len(forums.server.requests) == sent
            await asyncio.sleep(3.1)
        # The fault clears. (Under load one community's request can go out only after
        # another's 429 blocked the shared host: it fails without being sent, and its
        # fault would still be waiting.)
        forums.server.clear()
        recovered = {o.community: o for o in await service.poll_all()}
        assert {c: o.outcome for c, o in recovered.items()} == {
            "gig": "ok",
            "forum": "ok",
            "news": "ok",
        }
        # 3 + 4 threads with a reply each on reddit and discourse, 3 + 4 feed entries
        assert stored(service, "gig") == (14, 14)
        assert stored(service, "forum") == (14, 14)
        assert stored(service, "news") == (7, 7)
    finally:
        await service.stop()


async def test_a_control_character_leaves_a_feeds_coverage_as_a_clean_feeds(
    tmp_path: Path,
) -> None:
    """Measured before: 0.17 of the day covered against 1.00 for the same clean feed, so
    the feed's trends stayed withheld while its polls said "ok"."""
    feeds = FakeFeeds()
    router = Router()
    feeds.register(router)
    start = NOW - 2 * 86400
    for path in ("/clean.rss", "/dirty.rss"):
        feeds.add_feed(path, limit=200)
        for n in range(40):  # one entry an hour over the last 40 hours
            title = "Pay\x01 cut" if path == "/dirty.rss" and n == 39 else "Pay cut"
            feeds.add_entry(path, guid=f"e{n}", title=title, published=start + n * HOUR)
    clock = {"now": float(start + 40 * HOUR)}
    with FakeForumServer(router) as server:
        communities = [
            {"id": name, "source": "rss", "url": server.base_url + f"/{name}.rss"}
            for name in ("clean", "dirty")
        ]
        settings = settings_from_mapping(service_config(tmp_path, communities))
        service = Service(settings, registry=CollectorRegistry(), clock=lambda: clock["now"])
        await service.open()
        try:
            for step in range(4):  # polls a quarter hour apart, the feed unchanged
                clock["now"] += 900 if step else 0
                for community in settings.communities:
                    assert (await service.poll(community)).outcome in ("ok", "not_modified")
            await service.analyse()  # the scheduler's analysis job, as of the last poll
            assert service.snapshots is not None
            snapshots = {name: service.snapshots.get(name) for name in ("clean", "dirty")}
            coverage = {
                name: snapshot.coverage["1d"]
                for name, snapshot in snapshots.items()
                if snapshot is not None
            }
            computed = {s.computed_at for s in snapshots.values() if s is not None}
        finally:
            await service.stop()
    assert computed == {clock["now"]}  # both as of the last poll
    assert coverage["clean"] == pytest.approx(1.0)
    assert coverage["dirty"] == coverage["clean"]
