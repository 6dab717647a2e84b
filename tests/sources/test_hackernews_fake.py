"""The Hacker News adapter against the fake HN on real sockets, over several polls.

Every poll builds a new adapter, as the poller does; the process-wide root cache
carries over between polls unless a test clears it to play a restart. Request
counts come from the fake server's request log.

Request-count contract asserted here:
- whole site (Firebase): an idle poll is exactly 1 request (``/v0/maxitem.json``);
  a poll over K new ids is exactly 1 + K requests (one ``/v0/item/{id}.json`` each,
  ids answering null included) when every new comment's thread root is in the
  poll or in the root cache; otherwise each missing ancestor adds one request.
- keyword scope (Algolia): an idle poll is exactly 1 request; K new hits cost
  at most ceil(K / hitsPerPage) + 1 requests.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.fakeforum.hackernews import FakeHackerNews
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.http import PoliteClient
from monitor.sources.base import Batch, Cursor
from monitor.sources.hackernews import ROOT_CACHE, HackerNews
from monitor.telemetry import Telemetry
from tests.sources.test_hackernews import by_id, make_client, make_settings, make_source

NOW = 1_723_640_000
DAY = 86400


@pytest.fixture(autouse=True)
def fresh_root_cache() -> Iterator[None]:
    ROOT_CACHE.clear()
    yield
    ROOT_CACHE.clear()


@pytest.fixture
def site() -> FakeHackerNews:
    return FakeHackerNews()


@pytest.fixture
def server(site: FakeHackerNews) -> Iterator[FakeForumServer]:
    router = Router()
    site.register(router)
    with FakeForumServer(router) as running:
        yield running


@pytest.fixture
async def client(telemetry: Telemetry) -> AsyncIterator[PoliteClient]:
    polite = make_client(telemetry)
    yield polite
    await polite.aclose()


class Poller:
    """Polls one community with a fresh adapter each time; ``tune`` sets adapter bounds."""

    def __init__(self, server: FakeForumServer, client: PoliteClient, **community: Any) -> None:
        self.server = server
        self.client = client
        self.settings = make_settings(base_url=server.base_url, **community)
        self.tune: dict[str, int] = {}
        self.now = NOW

    def adapter(self) -> HackerNews:
        source = make_source(self.settings, self.client)
        for name, value in self.tune.items():
            setattr(source, name, value)
        return source

    async def __call__(self, cursor: Cursor) -> Batch:
        self.server.clear()
        return await self.adapter().poll(cursor=cursor, validators={}, now=self.now)


def item_requests(server: FakeForumServer) -> list[str]:
    return [request.path for request in server.requests_to("/v0/item/")]


# ---------------------------------------------------------------- whole site (Firebase)


def old_site(site: FakeHackerNews) -> None:
    """Ids 1..5: story 1 (5 days old) and its comments, story 3 (1 day old) and a comment."""
    site.add_story(by="alice", title="Old story", time=NOW - 5 * DAY, url="https://e.com/1")
    site.add_comment(parent=1, by="bob", text="old reply", time=NOW - 4 * DAY)
    site.add_story(by="carol", title="Recent story", time=NOW - DAY, text="Ask <i>HN</i>")
    site.add_comment(parent=3, by="dan", text="reply", time=NOW - DAY + 60)
    site.add_comment(parent=2, by="erin", text="late reply", time=NOW - 3600)


async def test_first_poll_honours_history_days(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    old_site(site)
    poll = Poller(server, client, history_days=2)  # since = NOW - 2 days
    batch = await poll({})

    # ids 1 and 2 are older than 2 days: walked (for thread roots) but not returned
    items = by_id(batch)
    assert sorted(items) == ["3", "4", "5"]
    assert (items["5"].thread_id, items["5"].parent_id) == ("1", "2")  # root via fetched 2 -> 1
    assert (items["4"].thread_id, items["4"].parent_id) == ("3", "3")
    assert items["3"].text == "Ask <i>HN</i>" and items["3"].kind == "thread"
    assert batch.cursor == {"next_id": 6}
    assert batch.complete  # the walk started at id 1
    assert len(server.requests) == 1 + 5  # maxitem + ids 1..5, no parent fetch


async def test_cycles_return_exactly_the_new_items(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    old_site(site)
    poll = Poller(server, client)
    first = await poll({})
    assert sorted(by_id(first)) == ["1", "2", "3", "4", "5"]

    # K = 4 new ids: story 6, comment 7 on 6, comment 8 on 7, comment 9 on 4 (thread 3)
    site.add_story(by="fay", title="New", time=NOW + 60)
    site.add_comment(parent=6, by="gus", text="a", time=NOW + 120)
    site.add_comment(parent=7, by="hal", text="b", time=NOW + 180)
    site.add_comment(parent=4, by="ivy", text="c", time=NOW + 240)
    second = await poll(first.cursor)
    items = by_id(second)
    assert sorted(items) == ["6", "7", "8", "9"]
    assert [items[i].thread_id for i in ("6", "7", "8", "9")] == ["6", "6", "6", "3"]
    assert [items[i].parent_id for i in ("6", "7", "8", "9")] == [None, "6", "7", "4"]
    # 1 + K exactly: 4's root came from the cache the first poll filled
    assert len(server.requests) == 1 + 4
    assert second.cursor == {"next_id": 10}

    idle = await poll(second.cursor)
    assert idle.envelopes == [] and idle.cursor == {"next_id": 10}
    assert [request.path for request in server.requests] == ["/v0/maxitem.json"]


async def test_reply_to_an_old_thread_after_a_restart(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    story = site.add_story(by="a", title="t", time=NOW - 3600)  # 1
    top = site.add_comment(parent=story, by="b", text="x", time=NOW - 3000)  # 2
    middle = site.add_comment(parent=top, by="c", text="y", time=NOW - 2000)  # 3
    poll = Poller(server, client)
    cursor = (await poll({})).cursor
    assert cursor == {"next_id": 4}

    ROOT_CACHE.clear()  # a restart forgets every root
    site.add_comment(parent=middle, by="d", text="z", time=NOW)  # 4
    batch = await poll(cursor)
    assert by_id(batch)["4"].thread_id == "1"
    # maxitem + id 4, then ancestors 3, 2 and 1 a level at a time
    assert item_requests(server) == [f"/v0/item/{i}.json" for i in (4, 3, 2, 1)]  # in turn

    site.add_comment(parent=top, by="e", text="w", time=NOW + 5)  # 5
    batch = await poll(batch.cursor)
    assert by_id(batch)["5"].thread_id == "1"
    assert item_requests(server) == ["/v0/item/5.json"]  # 2's root is cached now


async def test_bounded_walk_never_skips_an_id(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    site.add_story(by="a", title="seed", time=NOW - 60)  # 1
    poll = Poller(server, client)
    cursor = (await poll({})).cursor
    assert cursor == {"next_id": 2}

    poll.tune = {"max_items_per_poll": 3}
    for offset in range(3):  # ids 2, 3, 4
        site.add_story(by="a", title=f"s{offset}", time=NOW + offset)
    site.skip_ids(1)  # id 5 answers null
    for offset in range(3):  # ids 6, 7, 8
        site.add_comment(parent=1, by="b", text="c", time=NOW + 10 + offset)

    walked: list[str] = []
    returned: list[str] = []
    # 7 new ids, 3 a poll, then idle; the first two polls stop short of maxitem (8)
    expected = [(1 + 3, False), (1 + 3, False), (1 + 1, True), (1, True)]
    for requests, complete in expected:
        batch = await poll(cursor)
        assert len(server.requests) == requests
        assert batch.complete is complete
        walked += item_requests(server)
        returned += [envelope.item.external_id for envelope in batch.envelopes]
        cursor = batch.cursor
    # each id exactly once (requests within a poll run concurrently, so order is free)
    assert sorted(walked) == [f"/v0/item/{i}.json" for i in range(2, 9)]
    assert returned == ["2", "3", "4", "6", "7", "8"]
    assert cursor == {"next_id": 9}


async def test_failed_poll_then_retry_from_the_old_cursor(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    site.add_story(by="a", title="seed", time=NOW - 60)  # 1
    poll = Poller(server, client)
    cursor = (await poll({})).cursor
    for offset in range(5):  # ids 2..6
        site.add_comment(parent=1, by="b", text="c", time=NOW + offset)

    # id 4 fails on the first try and on the one retry (max_retries=1): the poll fails
    server.inject(Fault("status", path_prefix="/v0/item/4.json", count=2, status=500))
    with pytest.raises(HTTPStatusError):
        await poll.adapter().poll(cursor=cursor, validators={}, now=NOW)

    batch = await poll(cursor)  # the cursor was not committed: the same one again
    assert [envelope.item.external_id for envelope in batch.envelopes] == [
        "2",
        "3",
        "4",
        "5",
        "6",
    ]
    assert batch.cursor == {"next_id": 7}


async def test_a_lying_maxitem_never_moves_the_cursor_past_real_ids(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    """A maxitem far above every item made the walk take its 500 null ids as read, so the
    ids HN hands out next were behind the cursor: blind, while polls said ok."""
    old_site(site)
    poll = Poller(server, client)
    cursor = (await poll({})).cursor
    assert cursor == {"next_id": 6}
    site.max_item = 10**15
    site.add_story(by="fay", title="New", time=NOW - 60)  # id 6
    lied = await poll(cursor)
    assert sorted(by_id(lied)) == ["6"]
    assert lied.cursor == {"next_id": 7, "behind_from": NOW - 60}  # not 10**15 - 499 + 500
    assert not lied.complete and lied.covered_from == NOW  # the walk has not caught up
    site.max_item = None
    site.add_comment(parent=6, by="gus", text="a", time=NOW - 30)  # id 7
    honest = await poll(lied.cursor)
    assert sorted(by_id(honest)) == ["7"]
    assert (honest.complete, honest.covered_from) == (True, NOW - 60)  # the whole walk


async def test_a_first_poll_under_a_lying_maxitem_fails_as_malformed(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    old_site(site)
    site.max_item = 10**15  # its 500 newest ids are all null
    with pytest.raises(MalformedResponse, match="all null"):
        await Poller(server, client).adapter().poll(cursor={}, validators={}, now=NOW)


async def test_html_maxitem_is_malformed(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    site.add_story(by="a", title="t", time=NOW)
    server.inject(Fault("html", path_prefix="/v0/maxitem.json"))
    with pytest.raises(MalformedResponse):
        await Poller(server, client).adapter().poll(cursor={}, validators={}, now=NOW)


async def test_sites_under_prefixes_are_separate(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    site.add_story(by="a", title="main", time=NOW)
    other = FakeHackerNews(first_id=3)
    other.add_story(by="b", title="mirror", time=NOW)  # id 3; ids 1 and 2 answer null
    router = Router()
    site.register(router)
    other.register(router, prefix="/mirror")
    with FakeForumServer(router) as both:
        settings = make_settings(base_url=both.base_url + "/mirror")
        batch = await make_source(settings, client).poll(cursor={}, validators={}, now=NOW)
        paths = [request.path for request in both.requests]
    assert [(e.item.external_id, e.item.title) for e in batch.envelopes] == [("3", "mirror")]
    assert paths[0] == "/mirror/v0/maxitem.json"
    assert sorted(paths[1:]) == [f"/mirror/v0/item/{i}.json" for i in (1, 2, 3)]  # concurrent


# ---------------------------------------------------------------- fake fidelity


def test_fake_items_have_the_recorded_shape(real_samples: Path, site: FakeHackerNews) -> None:
    folder = real_samples / "hackernews"
    story = site.add_story(by="a", title="t", time=NOW, url="https://e.com")
    comment = site.add_comment(parent=story, by="b", text="x", time=NOW + 1)
    site.add_comment(parent=comment, by="c", text="y", time=NOW + 2)
    job = site.add_story(by="d", title="j", time=NOW + 3, url="https://e.com/j", kind="job")

    def keys(name: str) -> set[str]:
        return set(json.loads((folder / name).read_text()))

    assert set(site.items[story]) == keys("item_41243992_story.json")
    assert set(site.items[comment]) == keys("doc-examples/doc_item_2921983_comment.json")
    assert set(site.items[job]) == keys("item_41245073_job.json")
    recorded_list = json.loads((folder / "topstories.json").read_text())
    assert all(isinstance(i, int) for i in recorded_list) and len(recorded_list) == 500
    assert site.new_stories() == [job, story]  # newest first, comments left out


# ---------------------------------------------------------------- keyword scope (Algolia)


def outlier_site(site: FakeHackerNews) -> tuple[int, int]:
    """Hand-made: two matching posts inside 7 days, and posts that must not come back."""
    site.add_story(by="a", title="Outlier pay cut", time=NOW - 10 * DAY)  # too old
    story = site.add_story(by="b", title="Outlier onboarding", time=NOW - 3 * DAY, text="hi")
    reply = site.add_comment(parent=story, by="c", text="I left outlier", time=NOW - 3 * DAY + 100)
    site.add_comment(parent=story, by="d", text="unrelated", time=NOW - 3 * DAY + 200)
    site.add_story(by="e", title="Scale AI news", time=NOW - 2 * DAY)  # no match
    gone = site.add_story(by="f", title="Outlier deleted", time=NOW - DAY)
    site.delete(gone)  # Algolia drops deleted items
    return story, reply


def search_requests(server: FakeForumServer) -> list[dict[str, list[str]]]:
    return [request.query for request in server.requests_to("/api/v1/search_by_date")]


async def test_search_first_poll_honours_history_days(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    story, reply = outlier_site(site)  # ids 2 and 3
    poll = Poller(server, client, query="Outlier", history_days=7)
    batch = await poll({})
    items = by_id(batch)
    assert sorted(items) == [str(story), str(reply)]
    assert (items[str(reply)].kind, items[str(reply)].thread_id) == ("reply", str(story))
    assert items[str(reply)].parent_id == str(story)
    assert (items[str(story)].title, items[str(story)].text) == ("Outlier onboarding", "hi")
    [query] = search_requests(server)
    assert query["numericFilters"] == [f"created_at_i>{NOW - 7 * DAY - 1}"]
    assert len(server.requests) == 1
    assert batch.complete
    assert batch.cursor["after"] == NOW - 3 * DAY + 100  # the newest hit


async def test_search_cycles_and_request_counts(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    story, _ = outlier_site(site)
    poll = Poller(server, client, query="Outlier", history_days=7)
    cursor = (await poll({})).cursor

    k = 250  # comments one minute apart, far beyond the 600 s overlap of the last poll
    new_ids = [
        str(site.add_comment(parent=story, by="x", text=f"Outlier {i}", time=NOW + 60 * i))
        for i in range(1, k + 1)
    ]
    poll.now = NOW + 60 * k + 60  # a minute after the newest comment
    batch = await poll(cursor)
    assert sorted(by_id(batch)) == sorted(new_ids)
    # the window also holds the 2 old hits of the overlap: 252 hits, 100 a page = 3 requests
    assert len(server.requests) == 3 <= math.ceil(k / 100) + 1
    assert batch.cursor["after"] == NOW + 60 * k

    idle = await poll(batch.cursor)
    assert idle.envelopes == []
    assert len(server.requests) == 1  # 10 overlap hits, all in seen
    assert idle.cursor["after"] == NOW + 60 * k

    # indexed late: created 5 minutes before the newest hit, added after the last poll
    late = site.add_comment(parent=story, by="y", text="Outlier late", time=NOW + 60 * k - 300)
    caught = await poll(idle.cursor)
    assert [envelope.item.external_id for envelope in caught.envelopes] == [str(late)]
    again = await poll(caught.cursor)
    assert again.envelopes == [] and len(server.requests) == 1


async def test_search_cut_short_fills_the_gap(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    ids = [
        str(site.add_story(by="a", title="Outlier", time=NOW - 5000 + 60 * i)) for i in range(45)
    ]
    poll = Poller(server, client, query="Outlier", history_days=1)
    poll.tune = {"hits_per_page": 10, "max_pages_per_poll": 2}

    returned: list[str] = []
    cursor: Cursor = {}
    # 45 hits, 20 a poll at most. Poll 1: the newest 20 (ids 45..26), gap below id 26;
    # it vouches from its oldest hit (26) up (covered_from None: ingest takes the oldest).
    # Poll 2: window (since-1, time of 26], 26 hits, two pages: 26 (seen) and 25..7.
    # Poll 3: window (since-1, time of 7]: 7 hits, one page, 6 new; the gap closes, but
    # nothing newer than the gap was asked for: polls 2 and 3 vouch for nothing (NOW).
    # Poll 4 asks for what is new since the head and vouches from ``since`` (the first
    # poll's floor): the walk is whole.
    since = NOW - DAY
    for expected_new, expected_requests, complete, covered_from in (
        (20, 2, False, None),
        (19, 2, False, NOW),
        (6, 1, False, NOW),
        (0, 1, True, since),
    ):
        batch = await poll(cursor)
        assert len(batch.envelopes) == expected_new
        assert (batch.complete, batch.covered_from) == (complete, covered_from)
        assert len(server.requests) == expected_requests
        returned += [envelope.item.external_id for envelope in batch.envelopes]
        cursor = batch.cursor
    assert sorted(returned) == sorted(ids)  # every hit exactly once
    assert cursor["after"] == NOW - 5000 + 60 * 44
    assert "before" not in cursor


async def test_search_failed_poll_then_retry(
    site: FakeHackerNews, server: FakeForumServer, client: PoliteClient
) -> None:
    story, _ = outlier_site(site)
    poll = Poller(server, client, query="Outlier", history_days=7)
    cursor = (await poll({})).cursor
    new = [
        str(site.add_comment(parent=story, by="x", text="Outlier", time=NOW + i)) for i in range(3)
    ]
    server.inject(Fault("status", path_prefix="/api/v1/search_by_date", count=2, status=503))
    with pytest.raises(HTTPStatusError):
        await poll.adapter().poll(cursor=cursor, validators={}, now=NOW)
    server.inject(Fault("status", path_prefix="/api/v1/", status=200, body=b'{"unexpected": 1}'))
    with pytest.raises(MalformedResponse):
        await poll.adapter().poll(cursor=cursor, validators={}, now=NOW)

    batch = await poll(cursor)
    assert sorted(envelope.item.external_id for envelope in batch.envelopes) == sorted(new)
