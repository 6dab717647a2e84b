"""The Reddit adapter against the fake Reddit over real sockets on 127.0.0.1.

Every item here is made by the test, so expected ids and counts follow from what
each test adds; request counts follow from pages of 100 (the adapter's limit).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.config import Settings, settings_from_mapping
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault
from monitor.sources import reddit
from monitor.sources.base import Batch
from monitor.sources.reddit import Reddit
from monitor.telemetry import Telemetry
from tests.sources.polling import SourcePoller
from tests.support import REPO_ROOT

NOW = 1_750_000_000
DAY = 86400


@pytest.fixture
def fake() -> FakeReddit:
    return FakeReddit(clock=lambda: float(NOW))


@pytest.fixture
def server(fake: FakeReddit) -> Iterator[FakeForumServer]:
    with fake.server() as running:
        yield running


def make_settings(
    server: FakeForumServer,
    subreddit: str = "alpha",
    *,
    history_days: int = 30,
    reddit: dict[str, Any] | None = None,
    contact: str | None = None,
) -> Settings:
    return settings_from_mapping(
        {
            **({"contact": contact} if contact is not None else {}),
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "reddit": reddit or {},
            "communities": [
                {
                    "id": subreddit,
                    "source": "reddit",
                    "subreddit": subreddit,
                    "history_days": history_days,
                    "base_url": server.base_url,
                }
            ],
        }
    )


Poller = partial(SourcePoller, Reddit, now=NOW)
"""``Poller(telemetry, settings)``: polls the settings' first community, keeping its cursor."""


def ids(batch: Batch) -> list[str]:
    return [e.item.external_id for e in batch.envelopes]


def listing_requests(server: FakeForumServer, subreddit: str, listing: str) -> int:
    return len(server.requests_to(f"/r/{subreddit}/{listing}.json"))


def add_comments(fake: FakeReddit, thread: str, count: int, *, start: int) -> list[str]:
    return [fake.add_reply(thread, created=start + n) for n in range(count)]


# -- the fake itself -----------------------------------------------------------


def child_keys(path: Path) -> tuple[set[str], set[str]]:
    listing = json.loads(path.read_text())
    return set(listing["data"]), set().union(*(c["data"] for c in listing["data"]["children"]))


def test_fake_renders_the_recorded_shape(fake: FakeReddit, real_samples: Path) -> None:
    thread = fake.add_thread("alpha", created=NOW - 10)
    fake.add_reply(thread, created=NOW - 5)
    gone = fake.add_reply(thread, created=NOW - 4)
    fake.delete(gone)
    reddit = real_samples / "reddit"
    top_new, t3_keys = child_keys(reddit / "r_askreddit_new.json")
    top_comments, t1_keys = child_keys(reddit / "r_TEST_SUBREDDIT_comments_page1.json")
    new = fake.listing("alpha", "t3", limit=100)
    comments = fake.listing("alpha", "t1", limit=100)
    # every field the fake writes is one the real listings have
    assert set(new["data"]) <= top_new | top_comments
    assert set(comments["data"]) <= top_comments
    assert set().union(*(c["data"] for c in new["data"]["children"])) <= t3_keys
    assert set().union(*(c["data"] for c in comments["data"]["children"])) <= t1_keys
    # a deleted comment looks like api_info_t1_d7ltvl0_deleted.json: no author_fullname
    deleted = comments["data"]["children"][0]["data"]
    assert (deleted["author"], deleted["body"]) == ("[deleted]", "[deleted]")
    assert "author_fullname" not in deleted
    assert deleted["created"] - deleted["created_utc"] == 28800  # as in every recording


def test_fake_pages_like_reddit(fake: FakeReddit) -> None:
    thread = fake.add_thread("alpha", created=NOW - 100)
    names = add_comments(fake, thread, 7, start=NOW - 50)  # newest is names[-1]
    newest_first = names[::-1]
    page1 = fake.listing("alpha", "t1", limit=3)["data"]
    assert [c["data"]["name"] for c in page1["children"]] == newest_first[:3]
    assert (page1["dist"], page1["after"], page1["before"]) == (3, newest_first[2], None)
    page3 = fake.listing("alpha", "t1", limit=3, after=newest_first[5])["data"]
    assert [c["data"]["name"] for c in page3["children"]] == newest_first[6:]
    assert page3["after"] is None and page3["before"] == newest_first[6]
    newer = fake.listing("alpha", "t1", limit=100, before=newest_first[2])["data"]
    assert [c["data"]["name"] for c in newer["children"]] == newest_first[:2]
    fake.delete(newest_first[2])
    # Reddit's quirk the adapter avoids: before=<deleted item> answers nothing
    assert fake.listing("alpha", "t1", limit=100, before=newest_first[2])["data"]["dist"] == 0
    assert fake.listing("alpha", "t1", limit=500)["data"]["dist"] == 7  # capped at 100, 7 exist
    assert fake.listing("beta", "t1")["data"]["children"] == []


async def test_fake_http_routes(fake: FakeReddit, server: FakeForumServer) -> None:
    fake.add_thread("Alpha", created=NOW - 1)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for path in ("/r/alpha/new.json", "/r/ALPHA/new", "/r/alpha/new/"):
            answer = await http.get(path)
            assert answer.status_code == 200 and answer.json()["data"]["dist"] == 1
            assert answer.headers["x-ratelimit-remaining"].endswith(".0")
        assert (await http.get("/r/nowhere/new.json")).status_code == 404
        # no client credentials configured: no token endpoint
        assert (await http.post("/api/v1/access_token", data={"a": "b"})).status_code == 404


# -- polling cycles --------------------------------------------------------------


async def test_cycles_return_exactly_the_new_items(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    a1 = fake.add_thread("alpha", created=NOW - 500)
    a2 = fake.add_thread("alpha", created=NOW - 400)
    r1 = fake.add_reply(a1, created=NOW - 450)
    r2 = fake.add_reply(a1, parent=r1, created=NOW - 300)
    b1 = fake.add_thread("beta", created=NOW - 350)
    alpha = Poller(telemetry, make_settings(server, "alpha"))
    beta = Poller(telemetry, make_settings(server, "beta"))
    try:
        first = await alpha.poll()
        assert ids(first) == [a2, a1, r2, r1]  # submissions then comments, newest first
        reply = {e.item.external_id: e.item for e in first.envelopes}[r2]
        assert (reply.kind, reply.thread_id, reply.parent_id) == ("reply", a1, r1)
        assert first.requests == 2
        assert alpha.cursor == {
            "submissions": {"created": NOW - 400, "ids": [a2]},
            "comments": {"created": NOW - 300, "ids": [r2]},
        }

        a3 = fake.add_thread("alpha", created=NOW - 200)
        r3 = fake.add_reply(a2, created=NOW - 150)
        r4 = fake.add_reply(a3, created=NOW - 100)
        b2 = fake.add_reply(b1, created=NOW - 120)
        second = await alpha.poll()
        assert ids(second) == [a3, r4, r3]
        assert second.requests == 2
        assert ids(await beta.poll()) == [b1, b2]
        assert ids(await alpha.poll()) == []
    finally:
        await alpha.client.aclose()
        await beta.client.aclose()


async def test_idle_poll_costs_one_request_per_endpoint(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    thread = fake.add_thread("alpha", created=NOW - 60)
    add_comments(fake, thread, 150, start=NOW - 1000)  # more than a page on each side
    poller = Poller(telemetry, make_settings(server))
    try:
        assert len((await poller.poll()).envelopes) == 151
        server.clear()
        idle = await poller.poll()
        assert idle.envelopes == [] and idle.requests == 2
        assert listing_requests(server, "alpha", "new") == 1
        assert listing_requests(server, "alpha", "comments") == 1
    finally:
        await poller.client.aclose()


@pytest.mark.parametrize(
    ("new_threads", "new_comments", "thread_requests", "comment_requests"),
    [
        # A poll with a cursor first asks for 10 items, then pages of 100. K=30: 10 all
        # new, then 20 new + older ones -> 2. K=250: 10, 100, 100, then 40 new + older -> 4.
        (30, 250, 2, 4),
        # K=100: 10 all new, then 90 new + older ones -> 2
        (100, 100, 2, 2),
        # K=5: the small page reaches the cursor -> 1
        (5, 0, 1, 1),
    ],
)
async def test_new_items_cost_at_most_a_page_each_plus_one(
    fake: FakeReddit,
    server: FakeForumServer,
    telemetry: Telemetry,
    new_threads: int,
    new_comments: int,
    thread_requests: int,
    comment_requests: int,
) -> None:
    old = fake.add_thread("alpha", created=NOW - 20000)
    add_comments(fake, old, 120, start=NOW - 19000)
    poller = Poller(telemetry, make_settings(server))
    try:
        await poller.poll()
        threads = [fake.add_thread("alpha", created=NOW - 5000 + n) for n in range(new_threads)]
        comments = add_comments(fake, old, new_comments, start=NOW - 4000)
        server.clear()
        batch = await poller.poll()
        assert sorted(ids(batch)) == sorted(threads + comments)
        assert listing_requests(server, "alpha", "new") == thread_requests
        assert listing_requests(server, "alpha", "comments") == comment_requests
        # the bound: the small page, then a page of 100 for what is left (and the next item)
        assert thread_requests <= 1 + math.ceil(max(new_threads + 1 - 10, 0) / 100)
        assert comment_requests <= 1 + math.ceil(max(new_comments + 1 - 10, 0) / 100)
    finally:
        await poller.client.aclose()


async def test_an_idle_poll_asks_for_a_small_page(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry, real_samples: Path
) -> None:
    """An idle poll downloaded two full pages (about 250 KB each on real listings) to learn
    that nothing is new; it now asks for 10 items a listing."""
    thread = fake.add_thread("alpha", created=NOW - 9000)
    add_comments(fake, thread, 150, start=NOW - 8000)
    poller = Poller(telemetry, make_settings(server))
    try:
        await poller.poll()  # a first poll reads full pages back to history_days
        server.clear()
        idle = await poller.poll()
        assert idle.envelopes == [] and idle.requests == 2
        assert [r.query["limit"] for r in server.requests] == [["10"], ["10"]]
    finally:
        await poller.client.aclose()
    # on a recorded real listing of 100 comments, 10 of them weigh a tenth as much
    page = json.loads((real_samples / "reddit" / "r_askreddit_comments.json").read_text())
    children = page["data"]["children"]
    assert len(children) == 100
    tenth = len(json.dumps(children[:10])) / len(json.dumps(children))
    assert 0.05 < tenth < 0.2


async def test_first_poll_reaches_back_history_days(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    too_old = fake.add_thread("alpha", created=NOW - 40 * DAY)
    just_too_old = fake.add_thread("alpha", created=NOW - 30 * DAY - 1)
    inside = fake.add_thread("alpha", created=NOW - 29 * DAY)
    fresh = fake.add_thread("alpha", created=NOW - DAY)
    fake.add_reply(too_old, created=NOW - 35 * DAY)
    late_reply = fake.add_reply(just_too_old, created=NOW - 2 * DAY)
    poller = Poller(telemetry, make_settings(server, history_days=30))
    try:
        batch = await poller.poll()
        assert ids(batch) == [fresh, inside, late_reply]
        assert batch.requests == 2  # both pages reach an item older than 30 days
    finally:
        await poller.client.aclose()


async def test_a_walk_out_of_pages_says_incomplete(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coverage must not count what a poll could not page back to; a listing's end is its end."""
    monkeypatch.setattr(reddit, "MAX_PAGES", 2)
    thread = fake.add_thread("alpha", created=NOW - 20 * DAY)
    add_comments(fake, thread, 250, start=NOW - 10 * DAY)  # 3 pages of comments
    poller = Poller(telemetry, make_settings(server, history_days=30))
    try:
        batch = await poller.poll()
        assert len(ids(batch)) == 1 + 200  # the submission; two pages of the newest comments
        assert batch.complete is False
        assert listing_requests(server, "alpha", "comments") == 2
        monkeypatch.setattr(reddit, "MAX_PAGES", 3)
        fresh = Poller(telemetry, make_settings(server, history_days=30))
        whole = await fresh.poll()  # the third page is short: the listing ends there
        assert len(ids(whole)) == 251
        assert whole.complete is True
        await fresh.client.aclose()
    finally:
        await poller.client.aclose()


async def test_items_in_the_cursor_second_are_not_lost_or_repeated(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    first = fake.add_thread("alpha", created=NOW - 10)
    second = fake.add_thread("alpha", created=NOW - 10)
    poller = Poller(telemetry, make_settings(server))
    try:
        assert sorted(ids(await poller.poll())) == sorted([first, second])
        assert poller.cursor["submissions"] == {
            "created": NOW - 10,
            "ids": sorted([first, second]),
        }
        third = fake.add_thread("alpha", created=NOW - 10)  # same second, listed later
        assert ids(await poller.poll()) == [third]
        assert ids(await poller.poll()) == []
    finally:
        await poller.client.aclose()


async def test_deleted_items_count_and_do_not_stall_polling(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    thread = fake.add_thread("alpha", created=NOW - 100)
    removed = fake.add_reply(thread, created=NOW - 90)
    fake.remove(removed)
    kept = fake.add_reply(thread, created=NOW - 80)
    poller = Poller(telemetry, make_settings(server))
    try:
        items = {e.item.external_id: e.item for e in (await poller.poll()).envelopes}
        assert set(items) == {thread, removed, kept}
        assert items[removed].deleted and items[removed].author is None
        assert not items[kept].deleted and items[kept].author == "fake_member"
        # the newest comment (the cursor's item) is deleted; polling goes on regardless
        fake.delete(kept)
        later = fake.add_reply(thread, created=NOW - 70)
        assert ids(await poller.poll()) == [later]
    finally:
        await poller.client.aclose()


# -- faults --------------------------------------------------------------------------


async def test_failed_first_poll_is_redone_whole(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    threads = [fake.add_thread("alpha", created=NOW - 9000 + n) for n in range(150)]
    comments = add_comments(fake, threads[0], 30, start=NOW - 500)
    poller = Poller(telemetry, make_settings(server))
    try:
        # submissions (2 pages) succeed, then the comments body arrives cut in half
        server.inject(Fault("truncate", path_prefix="/r/alpha/comments"))
        with pytest.raises(MalformedResponse):
            await poller.poll()
        assert poller.cursor == {}
        batch = await poller.poll()
        assert len(batch.envelopes) == 180
        assert sorted(ids(batch)) == sorted(threads + comments)
    finally:
        await poller.client.aclose()


async def test_failed_poll_keeps_the_old_cursor_and_loses_nothing(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    thread = fake.add_thread("alpha", created=NOW - 9000)
    poller = Poller(telemetry, make_settings(server))
    try:
        await poller.poll()
        new_threads = [fake.add_thread("alpha", created=NOW - 800 + n) for n in range(120)]
        new_comments = add_comments(fake, thread, 5, start=NOW - 700)
        server.inject(Fault("status", path_prefix="/r/alpha/comments", status=500))
        with pytest.raises(HTTPStatusError):
            await poller.poll()
        batch = await poller.poll()
        assert sorted(ids(batch)) == sorted(new_threads + new_comments)
        assert len(batch.envelopes) == 125  # each exactly once
    finally:
        await poller.client.aclose()


async def test_unknown_subreddit_fails_the_poll(
    server: FakeForumServer, telemetry: Telemetry
) -> None:
    poller = Poller(telemetry, make_settings(server, "nowhere"))
    try:
        with pytest.raises(HTTPStatusError) as caught:
            await poller.poll()
        assert caught.value.status == 404
    finally:
        await poller.client.aclose()


# -- User-Agent, OAuth and rate-limit headers ---------------------------------------

CONTACT = "https://monitor.example.org/contact"


def user_agents(server: FakeForumServer) -> set[str]:
    return {r.headers["user-agent"] for r in server.requests}


async def test_user_agent_names_the_configured_contact(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    fake.add_thread("alpha", created=NOW - 50)
    poller = Poller(telemetry, make_settings(server, contact=CONTACT))
    try:
        await poller.poll()
    finally:
        await poller.client.aclose()
    assert len(server.requests) == 2  # both listings
    assert user_agents(server) == {f"python:forum-monitor:{__version__} (+{CONTACT})"}


async def test_configured_user_agent_is_sent_as_it_is(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    fake.add_thread("alpha", created=NOW - 50)
    mine = "linux:org.example.monitor:2.0 (by /u/someone_real)"
    settings = make_settings(server, contact=CONTACT, reddit={"user_agent": mine})
    poller = Poller(telemetry, settings)
    try:
        await poller.poll()
    finally:
        await poller.client.aclose()
    assert user_agents(server) == {mine}


def test_no_default_names_a_reddit_account_nobody_owns() -> None:
    """The old default, ``(by /u/forum-monitor)``, named an account no operator owns."""
    shipped = [*(REPO_ROOT / "monitor").rglob("*.py"), REPO_ROOT / "deploy/examples/config.toml"]
    assert [path for path in shipped if "/u/forum-monitor" in path.read_text()] == []


async def test_oauth_against_the_fake(telemetry: Telemetry) -> None:
    client_id = f"app-{uuid.uuid4().hex[:8]}"  # tokens are cached per app: a fresh one here
    fake = FakeReddit(client_id=client_id, client_secret="s3cret", require_auth=True)
    thread = fake.add_thread("alpha", created=NOW - 50)
    with fake.server() as server:
        app = {"client_id": client_id, "client_secret": "s3cret"}
        settings = make_settings(server, reddit=app, contact=CONTACT)
        poller = Poller(telemetry, settings)
        try:
            assert ids(await poller.poll()) == [thread]
            # one token request; the fake only grants grant_type=client_credentials
            assert len(server.requests_to("/api/v1/access_token")) == 1
            # the token request too says whom to reach
            assert user_agents(server) == {f"python:forum-monitor:{__version__} (+{CONTACT})"}
            listings = server.requests_to("/r/")
            assert {r.headers["authorization"] for r in listings} == {"bearer fake-token-1"}
            await poller.poll()
            assert fake.tokens_issued == 1  # cached across polls

            fake.revoke_tokens()  # the next listing answers 401: one new token, one retry
            reply = fake.add_reply(thread, created=NOW - 10)
            assert ids(await poller.poll()) == [reply]
            assert fake.tokens_issued == 2
        finally:
            await poller.client.aclose()


async def test_oauth_with_wrong_secret_fails(telemetry: Telemetry) -> None:
    client_id = f"app-{uuid.uuid4().hex[:8]}"
    fake = FakeReddit(client_id=client_id, client_secret="right", require_auth=True)
    with fake.server() as server:
        settings = make_settings(server, reddit={"client_id": client_id, "client_secret": "wrong"})
        poller = Poller(telemetry, settings)
        try:
            with pytest.raises(HTTPStatusError) as caught:
                await poller.poll()
            assert caught.value.status == 401
            assert server.requests_to("/r/") == []
        finally:
            await poller.client.aclose()


async def test_token_is_renewed_once_it_expires(telemetry: Telemetry) -> None:
    client_id = f"app-{uuid.uuid4().hex[:8]}"
    # a 30 s token is reused for half its life; a 0 s one is stale by the next poll
    for lifetime, issued in ((30, 1), (0, 2)):
        fake = FakeReddit(client_id=client_id, client_secret="s", token_lifetime=lifetime)
        fake.add_thread("alpha", created=NOW - 50)
        with fake.server() as server:
            reddit = {"client_id": client_id, "client_secret": "s"}
            poller = Poller(telemetry, make_settings(server, reddit=reddit))
            try:
                await poller.poll()
                await poller.poll()
                assert fake.tokens_issued == issued  # at most one per poll
                bearers = {r.headers["authorization"] for r in server.requests_to("/r/")}
                assert len(bearers) == issued
            finally:
                await poller.client.aclose()


async def test_ratelimit_headers_reach_the_gauge(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry, registry: CollectorRegistry
) -> None:
    fake.add_thread("alpha", created=NOW - 50)
    poller = Poller(telemetry, make_settings(server))
    try:
        await poller.poll()
        await poller.poll()
        # a budget of 1000 per window, 4 listing requests so far -> "996.0"
        remaining = registry.get_sample_value(
            "forum_monitor_rate_limit_remaining", {"host": "127.0.0.1"}
        )
        assert remaining == 996.0
    finally:
        await poller.client.aclose()


async def test_a_listing_cut_at_reddits_horizon_is_not_a_young_subreddit(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    """Reddit lists the newest 1000 items and then says ``after: null``, as if the subreddit
    began there: a busy subreddit must not claim the days it could not list."""
    thread = fake.add_thread("alpha", created=NOW - 6 * DAY)
    for n in range(1500):  # every 4 minutes from 5 days back: Reddit lists n = 500..1499
        fake.add_reply(thread, created=NOW - 5 * DAY + n * 240)
    poller = Poller(telemetry, make_settings(server, history_days=30))
    try:
        batch = await poller.poll()
        assert len(ids(batch)) == 1 + 1000
        assert listing_requests(server, "alpha", "comments") == 10  # the last ends the listing
        # the submissions listing ended after one item (a young listing: complete), the
        # comments only reach back to n = 500: from there on both are complete
        assert (batch.complete, batch.covered_from) == (False, NOW - 5 * DAY + 500 * 240)
    finally:
        await poller.client.aclose()


async def test_a_mark_in_the_future_is_read_as_no_mark(
    fake: FakeReddit, server: FakeForumServer, telemetry: Telemetry
) -> None:
    """A cursor an older release let a year-9999 post move would hide every later post."""
    thread = fake.add_thread("alpha", created=NOW - 600)
    poller = Poller(telemetry, make_settings(server))
    poller.cursor = {
        "submissions": {"created": 253_402_300_799, "ids": ["t3_poison"]},
        "comments": {"created": 253_402_300_799, "ids": []},
    }
    try:  # read as no mark at all: the walk starts over from history_days back
        assert ids(await poller.poll()) == [thread]
        assert poller.cursor["submissions"] == {"created": NOW - 600, "ids": [thread]}
    finally:
        await poller.client.aclose()
