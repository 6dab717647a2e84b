"""Multi-cycle polls of fake feeds over real sockets on 127.0.0.1, with injected faults.

Each test commits a poll's cursor and validators by hand (as ingest would) and
counts requests in the fake server's log: every poll is exactly one request.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import feedparser
import pytest

from monitor.config import settings_from_mapping
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.fakeforum.feeds import FakeFeeds
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch
from monitor.sources.feed import OVERLAP_SECONDS, Feed
from monitor.telemetry import Telemetry

NOW = 1_800_000_000
HOUR = 3600
DAY = 86400
POSTS = "/posts.rss"
ATOM = "/blog/atom.xml"


@pytest.fixture
def fake() -> Iterator[tuple[FakeFeeds, FakeForumServer]]:
    feeds = FakeFeeds(site_url="https://forum.example")
    feeds.add_feed(POSTS, limit=50)
    feeds.add_feed(ATOM, title="Blog", format="atom", limit=20)
    router = Router()
    feeds.register(router)
    with FakeForumServer(router) as server:
        yield feeds, server


@pytest.fixture
async def client(telemetry: Telemetry) -> AsyncIterator[PoliteClient]:
    polite = PoliteClient(
        policy=HttpPolicy(
            connect_timeout=2, read_timeout=2, total_timeout=5, max_retries=1, backoff_base=0.01
        ),
        telemetry=telemetry,
    )
    yield polite
    await polite.aclose()


@dataclass
class Poller:
    """One community's adapter plus the state ingest would commit after each poll."""

    feed: Feed
    cursor: dict[str, Any] = field(default_factory=dict)
    validators: dict[str, Any] = field(default_factory=dict)

    async def poll(self, *, now: int = NOW, commit: bool = True) -> Batch:
        batch = await self.feed.poll(cursor=self.cursor, validators=self.validators, now=now)
        if commit:
            self.cursor, self.validators = batch.cursor, batch.validators
        return batch


def poller(
    server: FakeForumServer, client: PoliteClient, *, path: str = POSTS, history_days: int = 30
) -> Poller:
    settings = settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "communities": [
                {
                    "id": "forum",
                    "source": "rss",
                    "url": f"https://forum.example{path}",
                    "base_url": server.base_url,
                    "history_days": history_days,
                }
            ],
        }
    )
    return Poller(Feed(settings.communities[0], settings=settings, client=client))  # type: ignore[arg-type]


def ids(batch: Batch) -> list[str]:
    return sorted(e.item.external_id for e in batch.envelopes)


async def test_poll_add_poll(fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient) -> None:
    feeds, server = fake
    topic = feeds.add_thread(POSTS, title="Pay cut again", author="ann", at=NOW - 5 * HOUR)
    feeds.add_reply(POSTS, topic_id=topic, author="bo", at=NOW - 4 * HOUR)
    feeds.add_reply(POSTS, topic_id=topic, author="cy", at=NOW - 3 * HOUR)
    community = poller(server, client)

    first = await community.poll()
    # the fake numbers posts from 1000 and topics from 100
    assert ids(first) == [
        "forum.example-post-1000",
        "forum.example-post-1001",
        "forum.example-post-1002",
    ]
    kinds = {e.item.external_id: (e.item.kind, e.item.thread_id) for e in first.envelopes}
    assert kinds["forum.example-post-1000"] == ("thread", "forum.example-topic-100")
    assert kinds["forum.example-post-1002"] == ("reply", "forum.example-topic-100")
    assert first.requests == 1 and len(server.requests_to(POSTS)) == 1
    assert set(first.validators) == {"etag", "last_modified"}

    idle = await community.poll()
    assert idle.not_modified and idle.envelopes == [] and idle.requests == 1
    assert len(server.requests_to(POSTS)) == 2
    assert server.requests_to(POSTS)[1].headers["if-none-match"] == first.validators["etag"]

    feeds.add_reply(POSTS, topic_id=topic, author="ann", at=NOW - 2 * HOUR)
    second = feeds.add_thread(POSTS, title="Leaving for another app", author="di", at=NOW - HOUR)
    feeds.add_reply(POSTS, topic_id=second, author="bo", at=NOW - HOUR // 2)
    third = await community.poll()
    assert ids(third) == [
        "forum.example-post-1003",
        "forum.example-post-1004",
        "forum.example-post-1005",
    ]
    assert third.requests == 1 and len(server.requests_to(POSTS)) == 3

    assert (await community.poll()).not_modified  # and quiet again


async def test_many_new_items_cost_one_request(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    community = poller(server, client)
    feeds.add_entry(POSTS, guid="old", title="before", published=NOW - DAY)
    await community.poll()
    for n in range(30):
        feeds.add_entry(POSTS, guid=f"new-{n}", title=f"t{n}", published=NOW - 600 + n)
    batch = await community.poll()
    assert ids(batch) == sorted(f"new-{n}" for n in range(30))
    assert batch.requests == 1 and len(server.requests_to(POSTS)) == 2


async def test_first_poll_honours_history_days(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    for guid, age in [("ten-days", 10 * DAY), ("six-days", 6 * DAY), ("an-hour", HOUR)]:
        feeds.add_entry(POSTS, guid=guid, title=guid, published=NOW - age)
    community = poller(server, client, history_days=7)
    assert ids(await community.poll()) == ["an-hour", "six-days"]
    assert (await community.poll()).envelopes == []


async def test_late_entries_inside_and_outside_the_overlap(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    feeds.add_entry(POSTS, guid="newest", title="n", published=NOW - HOUR)
    community = poller(server, client)
    await community.poll()
    # appears late with an older time: reported while younger than newest - overlap
    feeds.add_entry(POSTS, guid="late-1d", title="l", published=NOW - HOUR - DAY)
    feeds.add_entry(POSTS, guid="late-3d", title="l", published=NOW - HOUR - OVERLAP_SECONDS - DAY)
    batch = await community.poll()
    assert ids(batch) == ["late-1d"]  # late-3d is under the documented floor


async def test_if_modified_since_alone(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    feeds.add_entry(POSTS, guid="a", title="a", published=NOW - HOUR)
    community = poller(server, client)
    await community.poll()
    community.validators = {"last_modified": community.validators["last_modified"]}
    assert (await community.poll()).not_modified
    feeds.add_entry(POSTS, guid="b", title="b", published=NOW - 60)
    batch = await community.poll()
    assert not batch.not_modified and ids(batch) == ["b"]


async def test_atom_feed(fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient) -> None:
    feeds, server = fake
    feeds.add_entry(
        ATOM,
        guid="urn:post:1",
        title="Rates",
        published=NOW - 2 * HOUR,
        updated=NOW - HOUR,
        link="https://blog.example/1",
        author="Jane Doe",
        summary="<p>rates dropped</p>",
    )
    community = poller(server, client, path=ATOM)
    batch = await community.poll()
    (envelope,) = batch.envelopes
    item = envelope.item
    assert (item.external_id, item.kind, item.thread_id) == ("urn:post:1", "thread", "urn:post:1")
    assert (item.created_at, item.edited_at) == (NOW - 2 * HOUR, NOW - HOUR)
    assert (item.author, item.text, item.url) == (
        "Jane Doe",
        "<p>rates dropped</p>",
        "https://blog.example/1",
    )
    assert (await community.poll()).not_modified
    assert len(server.requests_to(ATOM)) == 2 and server.requests_to(POSTS) == []


async def test_missing_fields_over_the_wire(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    feeds.add_entry(POSTS, guid="full", title="t", published=NOW - 60, author="@ann")
    feeds.add_entry(
        POSTS, guid=None, title="link only", published=NOW - 50, link="https://x.example/2"
    )
    feeds.add_entry(POSTS, guid="undated", title="no date", published=None)
    batch = await poller(server, client).poll()
    assert ids(batch) == ["full", "https://x.example/2"]
    authors = {e.item.external_id: e.item.author for e in batch.envelopes}
    assert authors == {"full": "ann", "https://x.example/2": None}


async def test_failed_poll_then_retry_from_old_cursor(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    feeds.add_entry(POSTS, guid="a", title="a", published=NOW - 2 * HOUR)
    community = poller(server, client)
    await community.poll()
    for guid in ("b", "c", "d"):
        feeds.add_entry(POSTS, guid=guid, title=guid, published=NOW - HOUR)
    server.inject(Fault("status", path_prefix=POSTS, status=500, count=2))  # 1 try + 1 retry
    with pytest.raises(HTTPStatusError):
        await community.poll()
    server.inject(Fault("html", path_prefix=POSTS))
    with pytest.raises(MalformedResponse):
        await community.poll()
    batch = await community.poll()  # still the old cursor: nothing was committed
    assert ids(batch) == ["b", "c", "d"]
    assert (await community.poll()).envelopes == []


async def test_cut_off_body_loses_and_repeats_nothing(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    feeds.add_entry(POSTS, guid="start", title="s", published=NOW - DAY)
    community = poller(server, client)
    await community.poll()
    fresh = [f"p{n:02d}" for n in range(10)]
    for n, guid in enumerate(fresh):
        feeds.add_entry(POSTS, guid=guid, title=guid, published=NOW - 3600 + 60 * n)
    server.inject(Fault("truncate", path_prefix=POSTS))
    cut = await community.poll()  # half a body: the newest entries, the last held back
    assert 0 < len(cut.envelopes) < 10 and cut.validators == {}
    rest = await community.poll()  # the cursor of the cut poll was committed
    assert not rest.not_modified
    got = ids(cut) + ids(rest)
    assert sorted(got) == fresh  # every entry exactly once


def test_fake_rss_has_the_recorded_shape(real_samples: Path) -> None:
    """A fake Discourse-style entry carries the same fields as a recorded posts.rss entry."""
    recorded = feedparser.parse(
        io.BytesIO((real_samples / "rss" / "discourse_posts.rss").read_bytes())
    )
    feeds = FakeFeeds()
    feeds.add_feed(POSTS)
    topic = feeds.add_thread(POSTS, title="t", author="ann", at=NOW - 60)
    for _ in range(21):  # post 22 links with ?page=2, as in the recording
        feeds.add_reply(POSTS, topic_id=topic, author="bo", at=NOW)
    fake = feedparser.parse(io.BytesIO(feeds.render(POSTS)))
    assert not fake.bozo and fake.version == recorded.version == "rss20"
    assert set(fake.entries[0].keys()) == set(recorded.entries[0].keys())
    assert {e.link.rsplit("/", 1)[1] for e in fake.entries} >= {"100#post_1", "100?page=2#post_22"}


async def test_a_feed_shorter_than_history_days_vouches_from_its_oldest_entry(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    """A feed holding 38 days must not claim 90: those days would read as "covered, 0 posts"
    and poison every baseline."""
    feeds, server = fake
    for age in (38, 20, 5):
        feeds.add_entry(POSTS, guid=f"age-{age}", title="t", published=NOW - age * DAY)
    long_history = poller(server, client, history_days=90)
    first = await long_history.poll()
    assert (first.complete, first.covered_from) == (True, NOW - 38 * DAY)
    short_history = poller(server, client, history_days=30)
    capped = await short_history.poll()  # the feed reaches past 30 days: vouch for 30
    assert (capped.complete, capped.covered_from) == (True, NOW - 30 * DAY)

    feeds.add_entry(POSTS, guid="new", title="t", published=NOW - HOUR)
    later = await long_history.poll(now=NOW + HOUR)  # reaches back to what poll 1 saw
    assert (later.complete, later.covered_from) == (True, None)  # from the last success


async def test_an_empty_first_answer_vouches_for_nothing(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    _, server = fake
    first = await poller(server, client).poll()
    assert first.covered_from == NOW  # an empty span: how far back would it reach?


async def test_a_feed_that_scrolled_past_the_last_poll_vouches_only_for_itself(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    feeds, server = fake
    community = poller(server, client, path=ATOM)  # this feed keeps 20 entries
    feeds.add_entry(ATOM, guid="seen", title="t", published=NOW - DAY)
    await community.poll()
    for n in range(25):  # more than the feed holds: "seen" and 5 new ones scroll off
        feeds.add_entry(ATOM, guid=f"n{n}", title="t", published=NOW - 3 * HOUR + 60 * n)
    gap = await community.poll(now=NOW + 60)
    assert len(gap.envelopes) == 20
    assert (gap.complete, gap.covered_from) == (False, NOW - 3 * HOUR + 5 * 60)


async def test_a_control_character_does_not_stall_coverage(
    fake: tuple[FakeFeeds, FakeForumServer], client: PoliteClient
) -> None:
    """One control character made every parse "damaged": the window was never trusted, so
    coverage sat at 0.17 against 1.00 for the same clean feed, and trends stayed withheld."""
    feeds, server = fake
    feeds.add_entry(POSTS, guid="dirty", title="Pay\x01 cut \x1b", published=NOW - 2 * DAY)
    feeds.add_entry(POSTS, guid="clean", title="Fine", published=NOW - DAY)
    community = poller(server, client)
    first = await community.poll()
    assert ids(first) == ["clean", "dirty"] and first.validators  # trusted: validators kept
    titles = {e.item.external_id: e.item.title for e in first.envelopes}
    assert titles["dirty"] == "Pay cut"
    feeds.add_entry(POSTS, guid="new", title="t", published=NOW - HOUR)
    second = await community.poll(now=NOW + HOUR)
    assert ids(second) == ["new"] and second.complete and second.covered_from is None
