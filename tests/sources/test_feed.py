"""The feed adapter on the recorded Discourse feeds, a hand-made Atom feed and damaged bodies.

Bodies reach the adapter through ``httpx.MockTransport``; the community's
``base_url`` points at 127.0.0.1, so the transport also sees the URL rule.
Expected values were read off the recordings by hand (grep, ``date -u -d``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from monitor.config import settings_from_mapping
from monitor.errors import MalformedResponse
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch, Item
from monitor.sources.feed import (
    MAX_SEEN_IDS,
    OVERLAP_SECONDS,
    Feed,
    FeedCursor,
    bounded_id,
    discourse_position,
    entry_to_item,
    split_feed_url,
)
from monitor.telemetry import Telemetry

NOW = 1769040000  # 2026-01-22T00:00:00Z, just after the recordings' newest post
SITE = "discuss.criticalfallibilism.com"
MOCK_ROOT = "http://127.0.0.1:9"

Handler = Callable[[httpx.Request], httpx.Response]


def make_feed(
    handler: Handler,
    telemetry: Telemetry,
    *,
    url: str = f"https://{SITE}/posts.rss",
    history_days: int = 30,
) -> Feed:
    settings = settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "communities": [
                {
                    "id": "cf",
                    "source": "rss",
                    "url": url,
                    "base_url": MOCK_ROOT,
                    "history_days": history_days,
                }
            ],
        }
    )
    client = PoliteClient(
        policy=HttpPolicy(
            connect_timeout=1, read_timeout=1, total_timeout=2, max_retries=0, backoff_base=0.01
        ),
        telemetry=telemetry,
        transport=httpx.MockTransport(handler),
    )
    return Feed(settings.communities[0], settings=settings, client=client)  # type: ignore[arg-type]


@pytest.fixture
async def feeds() -> AsyncIterator[list[Feed]]:
    """Feeds made by a test, closed at its end."""
    made: list[Feed] = []
    yield made
    for feed in made:
        await feed.client.aclose()


def serve(body: bytes, content_type: str = "application/rss+xml; charset=utf-8") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})

    return handler


async def poll_body(
    feeds: list[Feed],
    telemetry: Telemetry,
    body: bytes,
    *,
    cursor: dict[str, object] | None = None,
    history_days: int = 30,
    content_type: str = "application/rss+xml; charset=utf-8",
) -> Batch:
    feed = make_feed(serve(body, content_type), telemetry, history_days=history_days)
    feeds.append(feed)
    return await feed.poll(cursor=cursor or {}, validators={}, now=NOW)


def by_id(batch: Batch) -> dict[str, Item]:
    return {e.item.external_id: e.item for e in batch.envelopes}


# --- recorded: /posts.rss (50 latest posts of the whole forum) ---------------------------


async def test_posts_rss_counts_and_threads(
    feeds: list[Feed], telemetry: Telemetry, real_samples: Path
) -> None:
    body = (real_samples / "rss" / "discourse_posts.rss").read_bytes()
    batch = await poll_body(feeds, telemetry, body)
    items = [e.item for e in batch.envelopes]
    # grep -c '<item>' -> 50; links ending '#post_1' -> 2 (topics 2148 and 2147)
    assert len(items) == 50
    threads = sorted(i.external_id for i in items if i.kind == "thread")
    assert threads == [f"{SITE}-post-20203", f"{SITE}-post-20218"]
    # per-topic counts of the <link>s: 2144 -> 20, 11 distinct topics
    assert sum(1 for i in items if i.thread_id == f"{SITE}-topic-2144") == 20
    assert len({i.thread_id for i in items}) == 11
    assert all(i.parent_id == i.thread_id for i in items if i.kind == "reply")
    assert all(i.parent_id is None for i in items if i.kind == "thread")
    assert batch.requests == 1


async def test_posts_rss_fields(
    feeds: list[Feed], telemetry: Telemetry, real_samples: Path
) -> None:
    body = (real_samples / "rss" / "discourse_posts.rss").read_bytes()
    items = by_id(await poll_body(feeds, telemetry, body))

    first = items[f"{SITE}-post-20218"]
    assert first.kind == "thread"
    assert first.thread_id == f"{SITE}-topic-2148"
    assert first.title == "People Being Bad at Logic"
    assert first.author == "Elliot"  # dc:creator "@Elliot"
    assert first.created_at == 1769038182  # Wed, 21 Jan 2026 23:29:42 +0000
    assert first.text.startswith("<p>I was talking with someone")
    assert first.text_is_html
    assert first.url == f"https://{SITE}/t/people-being-bad-at-logic/2148#post_1"
    assert first.edited_at is None and not first.deleted

    reply = items[f"{SITE}-post-20217"]  # link .../2144?page=2#post_31
    assert reply.kind == "reply"
    assert reply.thread_id == reply.parent_id == f"{SITE}-topic-2144"
    assert reply.title == ""
    assert reply.created_at == 1769035240  # Wed, 21 Jan 2026 22:40:40 +0000

    # dc:creator "@Eternity Nihal Noorunnabi": the user name only
    assert items[f"{SITE}-post-20200"].author == "Eternity"
    assert items[f"{SITE}-post-20169"].created_at == 1768707808  # Sun, 18 Jan 2026 03:43:28


async def test_posts_rss_cursor(
    feeds: list[Feed], telemetry: Telemetry, real_samples: Path
) -> None:
    body = (real_samples / "rss" / "discourse_posts.rss").read_bytes()
    batch = await poll_body(feeds, telemetry, body)
    # newest 1769038182; floor = newest - 2 days = 1768865382 (Mon 19 Jan 23:29:42Z):
    # posts 20195..20218 (20 and 21 Jan) are at/after it, 20194 (19 Jan 22:34:40) is not
    assert batch.cursor["newest"] == 1769038182
    assert batch.cursor["floor"] == 1769038182 - OVERLAP_SECONDS
    assert sorted(batch.cursor["seen"]) == sorted(f"{SITE}-post-{n}" for n in range(20195, 20219))
    again = await poll_body(feeds, telemetry, body, cursor=batch.cursor)
    assert again.envelopes == []


# --- recorded: /t/<slug>/2144.rss (one topic's latest 25 posts) ---------------------------


async def test_topic_rss(feeds: list[Feed], telemetry: Telemetry, real_samples: Path) -> None:
    body = (real_samples / "rss" / "discourse_t_2144.rss").read_bytes()
    batch = await poll_body(feeds, telemetry, body)
    items = by_id(batch)
    # 25 <item>s, links /t/kpop-demon-hunters/2144/<n> for n = 31..8 and 6: all replies
    assert len(items) == 25
    assert {i.kind for i in items.values()} == {"reply"}
    assert {i.thread_id for i in items.values()} == {f"{SITE}-topic-2144"}
    assert f"{SITE}-post-2144-7" not in items  # not in the recording
    assert items[f"{SITE}-post-2144-6"].created_at == 1768110570  # Sun, 11 Jan 2026 05:49:30
    assert items[f"{SITE}-post-2144-31"].created_at == 1769035240
    # dc:creator "Eternity" here, "@Eternity Nihal Noorunnabi" in posts.rss: one author
    assert items[f"{SITE}-post-2144-21"].author == "Eternity"


async def test_topic_rss_first_poll_honours_history_days(
    feeds: list[Feed], telemetry: Telemetry, real_samples: Path
) -> None:
    body = (real_samples / "rss" / "discourse_t_2144.rss").read_bytes()
    batch = await poll_body(feeds, telemetry, body, history_days=7)
    # since = NOW - 7 d = 1768435200 (Thu 15 Jan 00:00Z): posts 31..12 (19-21 Jan),
    # 11 (16 Jan) and 10 (15 Jan 09:59) are in; 9, 8 and 6 (11-13 Jan) are not
    numbers = sorted(int(e.item.external_id.rsplit("-", 1)[1]) for e in batch.envelopes)
    assert numbers == list(range(10, 32))


# --- hand-made Atom (no Atom recording exists) --------------------------------------------

# Hand-made Atom 1.0 document, labelled as such: written for this test.
ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Hand-made</title>
  <id>urn:uuid:feed</id>
  <updated>2026-01-21T12:00:00Z</updated>
  <entry>
    <id>urn:uuid:edited</id>
    <title>Edited entry</title>
    <link href="/posts/1"/>
    <published>2026-01-21T10:00:00+02:00</published>
    <updated>2026-01-21T12:00:00Z</updated>
    <author><name>Jane Doe</name></author>
    <summary>teaser</summary>
    <content type="html">&lt;p&gt;whole body&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>No id, a link</title>
    <link href="https://elsewhere.example/a"/>
    <updated>2026-01-20T00:00:00Z</updated>
    <author><name>@bob</name></author>
    <summary type="html">&lt;b&gt;hi&lt;/b&gt;</summary>
  </entry>
  <entry>
    <id>urn:uuid:undated</id>
    <title>No date at all</title>
  </entry>
</feed>
"""


async def test_atom(feeds: list[Feed], telemetry: Telemetry) -> None:
    feed = make_feed(
        serve(ATOM, "application/atom+xml"), telemetry, url="https://blog.example/atom.xml"
    )
    feeds.append(feed)
    batch = await feed.poll(cursor={}, validators={}, now=NOW)
    items = by_id(batch)
    # the undated entry is skipped; the others are generic thread starts
    assert sorted(items) == ["https://elsewhere.example/a", "urn:uuid:edited"]
    edited = items["urn:uuid:edited"]
    assert edited.kind == "thread" and edited.thread_id == "urn:uuid:edited"
    assert edited.created_at == 1768982400  # 2026-01-21T08:00:00Z
    assert edited.edited_at == 1768996800  # 2026-01-21T12:00:00Z
    assert edited.text == "<p>whole body</p>"  # content wins over the teaser
    assert edited.author == "Jane Doe"
    # resolved against the configured feed URL, not the 127.0.0.1 base_url it came from
    assert edited.url == "https://blog.example/posts/1"
    linked = items["https://elsewhere.example/a"]
    assert linked.created_at == 1768867200  # only <updated>: 2026-01-20T00:00:00Z
    assert linked.edited_at is None
    assert linked.author == "bob"
    assert linked.text == "<b>hi</b>"


# --- hand-made RSS with missing fields -----------------------------------------------------

# Hand-made RSS 2.0, labelled as such: each item lacks something on purpose.
SPARSE_RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>sparse</title>
<item><title>guid only</title><guid isPermaLink="false">g-1</guid>
  <pubDate>Tue, 20 Jan 2026 10:00:00 +0000</pubDate></item>
<item><title>link only</title><link>https://x.example/2</link>
  <pubDate>Tue, 20 Jan 2026 11:00:00 +0000</pubDate><author>jo@x.example (Jo)</author></item>
<item><title>neither</title><pubDate>Tue, 20 Jan 2026 12:00:00 +0000</pubDate></item>
<item><title>no date</title><guid isPermaLink="false">g-4</guid></item>
<item><guid isPermaLink="false">g-5</guid><pubDate>Tue, 20 Jan 2026 13:00:00 GMT</pubDate></item>
</channel></rss>
"""


async def test_missing_fields(feeds: list[Feed], telemetry: Telemetry) -> None:
    items = by_id(await poll_body(feeds, telemetry, SPARSE_RSS))
    hashed = "sha256:" + hashlib.sha256(b"neither\nTue, 20 Jan 2026 12:00:00 +0000").hexdigest()
    assert sorted(items) == sorted(["g-1", "https://x.example/2", hashed, "g-5"])  # g-4 skipped
    assert items["g-1"].author is None and items["g-1"].text == ""
    assert items["g-1"].created_at == 1768903200  # 2026-01-20T10:00:00Z
    assert items["https://x.example/2"].author == "Jo"
    assert items["g-5"].title == "" and items["g-5"].created_at == 1768914000


async def test_valid_empty_feed_is_no_error(feeds: list[Feed], telemetry: Telemetry) -> None:
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
    batch = await poll_body(feeds, telemetry, body)
    assert batch.envelopes == [] and batch.cursor["seen"] == {}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<!DOCTYPE html><html><body><h1>Oops</h1></body></html>", "text/html"),
        (b'{"unexpected": true}', "application/json"),
        (b"", "application/rss+xml"),
        (b"/etc/hostname", "text/plain"),  # would be opened as a file if handed over as bytes
    ],
)
async def test_not_a_feed_is_malformed(
    feeds: list[Feed], telemetry: Telemetry, body: bytes, content_type: str
) -> None:
    with pytest.raises(MalformedResponse) as caught:
        await poll_body(feeds, telemetry, body, content_type=content_type)
    assert caught.value.reason == "malformed" and caught.value.host == "127.0.0.1"


async def test_damaged_feed_with_entries_still_parses(
    feeds: list[Feed], telemetry: Telemetry
) -> None:
    # Hand-made: &nbsp; is undefined in XML, so feedparser flags the feed (bozo) but reads it
    body = SPARSE_RSS.replace(b"<title>guid only</title>", b"<title>guid&nbsp;only</title>")
    feed = make_feed(
        lambda r: httpx.Response(200, content=body, headers={"ETag": '"v1"'}), telemetry
    )
    feeds.append(feed)
    cursor = {"floor": 1768900000, "newest": 1768900000, "seen": {}}
    batch = await feed.poll(cursor=cursor, validators={}, now=NOW)
    # the last item (g-5) is held back as possibly cut short; g-4 has no date
    assert len(batch.envelopes) == 3
    assert batch.validators == {}  # not trusted: the next poll must refetch in full
    assert batch.cursor["floor"] == 1768900000  # not moved past what the damage may hide


# --- conditional requests ----------------------------------------------------------------


async def test_validators_sent_and_304_is_not_modified(
    feeds: list[Feed], telemetry: Telemetry
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"ETag": '"v1"'})
        return httpx.Response(200, content=SPARSE_RSS, headers={"ETag": '"v1"'})

    # no Content-Type on the 200: feedparser flags that (bozo) but it is no damage, so
    # the validators are kept
    feed = make_feed(handler, telemetry, url="https://blog.example/feed.xml?tag=pay")
    feeds.append(feed)
    stale = {"etag": '"v1"', "last_modified": "Tue, 20 Jan 2026 13:00:00 GMT"}
    first = await feed.poll(cursor={}, validators=stale, now=NOW)
    # a first poll never sends validators (a reset cursor must refetch)
    assert "if-none-match" not in seen[0].headers
    assert str(seen[0].url) == f"{MOCK_ROOT}/feed.xml?tag=pay"  # base_url replaced the host
    assert len(first.envelopes) == 4 and first.validators == {"etag": '"v1"'}
    second = await feed.poll(cursor=first.cursor, validators=first.validators, now=NOW)
    assert seen[1].headers["if-none-match"] == '"v1"'
    assert second.not_modified and second.envelopes == [] and second.requests == 1
    assert second.cursor == first.cursor and second.validators == {"etag": '"v1"'}


# --- pure parts --------------------------------------------------------------------------


def test_split_feed_url() -> None:
    assert split_feed_url(url="https://f.example/posts.rss", base_url=None) == (
        "https://f.example",
        "/posts.rss",
    )
    assert split_feed_url(url="https://f.example:8443", base_url=None) == (
        "https://f.example:8443",
        "/",
    )
    assert split_feed_url(
        url="https://f.example/a/feed?x=1#frag", base_url="http://127.0.0.1:8080/mirror/"
    ) == ("http://127.0.0.1:8080/mirror", "/a/feed?x=1")


@pytest.mark.parametrize(
    ("guid", "link", "expected"),
    [
        (f"{SITE}-post-2144-31", f"https://{SITE}/t/kpop/2144/31", ("2144", 31)),
        (f"{SITE}-post-20217", f"https://{SITE}/t/kpop/2144?page=2#post_31", ("2144", 31)),
        (f"{SITE}-post-20218", f"https://{SITE}/t/logic/2148#post_1", ("2148", 1)),
        (f"{SITE}-topic-2144", f"https://{SITE}/t/kpop/2144", ("2144", 1)),
        ("urn:uuid:1", f"https://{SITE}/t/kpop/2144/31", None),  # not a Discourse guid
        (f"{SITE}-post-5", "https://blog.example/2024/05/post", None),  # not a topic link
        (f"{SITE}-post-5", None, None),
    ],
)
def test_discourse_position(guid: str, link: str | None, expected: tuple[str, int] | None) -> None:
    position = discourse_position(external_id=guid, link=link)
    if expected is None:
        assert position is None
    else:
        assert position is not None
        assert (position.thread_id, position.post_number) == (
            f"{SITE}-topic-{expected[0]}",
            expected[1],
        )


def test_bounded_id() -> None:
    long = "https://x.example/" + "a" * 200
    assert bounded_id("short") == "short"
    assert bounded_id(long) == "sha256:" + hashlib.sha256(long.encode()).hexdigest()
    assert len(bounded_id(long)) <= 128


def _item(external_id: str, at: int) -> Item:
    return Item(external_id=external_id, kind="thread", thread_id=external_id, created_at=at)


def test_cursor_is_bounded() -> None:
    base = 1_700_000_000
    items = [_item(f"i{n}", base + n // 2) for n in range(MAX_SEEN_IDS + 11)]  # two per second
    cursor = FeedCursor(floor=0).advanced(items, now=base + 10**6, complete=True)
    # newest = base + 505, so all are inside the overlap and only the cap bites: it keeps
    # the 1000 newest (n = 11..1010) and drops n <= 10; n = 11 shares second base + 5
    # with the dropped n = 10, so that whole second goes: floor base + 6, n = 12..1010
    # (999 ids)
    assert cursor.floor == base + 6
    assert len(cursor.seen) == 999 and "i11" not in cursor.seen and "i12" in cursor.seen


def test_future_entry_does_not_lift_the_floor_past_now() -> None:
    now = 1_700_000_000
    cursor = FeedCursor(floor=0).advanced([_item("future", now + 10**7)], now=now, complete=True)
    assert cursor.floor == now - OVERLAP_SECONDS
    assert cursor.unseen([_item("late", now - 3600), _item("future", now + 10**7)]) == [
        _item("late", now - 3600)
    ]


@pytest.mark.parametrize(
    ("author", "expected"),
    [
        ("jo@x.example (Jo)", "Jo"),  # RSS <author>; feedparser's own split gives "ple (Jo"
        ("Jo Smith (jo@x.example)", "Jo Smith"),  # how feedparser writes Atom name + email
        ("jo@x.example", "jo@x.example"),
        ("@Eternity Nihal Noorunnabi", "Eternity"),
        ("@", None),
        ("  ", None),
    ],
)
def test_author_forms(author: str, expected: str | None) -> None:
    entry = {"id": "e", "published_parsed": time.gmtime(NOW), "author": author}
    item = entry_to_item(entry)
    assert item is not None and item.author == expected


async def test_entry_cut_short_is_held_back(feeds: list[Feed], telemetry: Telemetry) -> None:
    # Hand-made RSS; the first answer is cut off right before the last item's <guid>,
    # so that item still has a link and a date and would pass for a whole entry.
    full = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>cut</title>
<item><title>one</title><link>https://x.example/1</link>
  <pubDate>Tue, 20 Jan 2026 12:00:00 +0000</pubDate><guid isPermaLink="false">g-1</guid></item>
<item><title>two</title><link>https://x.example/2</link>
  <pubDate>Tue, 20 Jan 2026 11:00:00 +0000</pubDate><guid isPermaLink="false">g-2</guid></item>
</channel></rss>
"""
    bodies = [full[: full.rindex(b"<guid")], full]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bodies.pop(0), headers={"ETag": '"same"'})

    feed = make_feed(handler, telemetry)
    feeds.append(feed)
    cursor = {"floor": 1768800000, "newest": 1768800000, "seen": {}}
    cut = await feed.poll(cursor=cursor, validators={}, now=NOW)
    assert [e.item.external_id for e in cut.envelopes] == ["g-1"]
    assert cut.validators == {}
    rest = await feed.poll(cursor=cut.cursor, validators=cut.validators, now=NOW)
    assert [e.item.external_id for e in rest.envelopes] == ["g-2"]  # not "https://x.example/2"
