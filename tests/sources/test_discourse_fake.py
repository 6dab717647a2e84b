"""The Discourse adapter against the fake Discourse over real sockets on 127.0.0.1.

Every post here is made by the test, so expected ids and counts follow from what
each test adds; request counts follow from /posts.json pages of 50, ids descending.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import Session

from monitor.analysis.coverage import covered_spans
from monitor.config import DiscourseCommunity, settings_from_mapping
from monitor.errors import HTTPStatusError, MalformedResponse, RateLimited
from monitor.fakeforum.discourse import SMALL_ACTION, FakeDiscourse, iso
from monitor.fakeforum.server import (
    FakeForumServer,
    FakeResponse,
    Fault,
    Request,
    Router,
)
from monitor.http import HttpPolicy, PoliteClient
from monitor.service import Service
from monitor.sources.base import Batch
from monitor.sources.discourse import Discourse, UnknownCategory
from monitor.telemetry import Telemetry
from tests.support import service_config, stored_posts

NOW = 1_700_000_000
DAY = 86400


class Forums:
    """Two forums on one server, under /a and /b; ``fail_before`` breaks older pages."""

    def __init__(self) -> None:
        self.a = FakeDiscourse(prefix="/a")
        self.b = FakeDiscourse(prefix="/b")
        self.private = FakeDiscourse(prefix="/private", api_key="sekret")
        self.router = Router()
        for forum in (self.a, self.b, self.private):
            forum.register(self.router)
        self.fail_before = False
        self.server = FakeForumServer(self.handle)

    def handle(self, request: Request) -> FakeResponse:
        if self.fail_before and "before" in request.query:
            return FakeResponse.json({"errors": ["boom"]}, status=500)
        return self.router(request)

    def posts_requests(self, prefix: str) -> list[Request]:
        return self.server.requests_to(prefix + "/posts.json")


@pytest.fixture
def forums() -> Iterator[Forums]:
    forums = Forums()
    with forums.server:
        yield forums


@pytest.fixture
async def client(telemetry: Telemetry) -> Any:
    policy = HttpPolicy(
        connect_timeout=2,
        read_timeout=2,
        total_timeout=5,
        backoff_base=0.01,
        max_retries=1,
        max_retry_wait=5,
    )
    client = PoliteClient(policy=policy, telemetry=telemetry)
    yield client
    await client.aclose()


def source(
    forums: Forums,
    client: PoliteClient,
    prefix: str = "/a",
    *,
    api_key: str | None = None,
    **overrides: Any,
) -> Discourse:
    settings = settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "discourse": {"api_key": api_key} if api_key else {},
        }
    )
    community = DiscourseCommunity.model_validate(
        {
            "id": prefix.strip("/"),
            "source": "discourse",
            "base_url": forums.server.base_url + prefix,
            **overrides,
        }
    )
    return Discourse(community, settings=settings, client=client)


def ids(batch: Batch) -> list[str]:
    return sorted(e.item.external_id for e in batch.envelopes)


def add_posts(forum: FakeDiscourse, count: int, *, start: int, title: str = "Busy") -> list[str]:
    """One thread and ``count - 1`` replies, a minute apart; their external ids."""
    first = forum.add_thread(title=title, author="op", created_at=start)
    made = [f"{first.topic_id}/1"]
    for n in range(1, count):
        reply = forum.add_reply(topic_id=first.topic_id, author=f"u{n % 7}", created_at=start + n)
        made.append(f"{reply.topic_id}/{reply.post_number}")
    return made


async def test_first_poll_honours_history_days(forums: Forums, client: PoliteClient) -> None:
    a = forums.a
    old = a.add_thread(title="Old news", author="ann", created_at=NOW - 40 * DAY)
    a.add_reply(topic_id=old.topic_id, author="bob", created_at=NOW - 35 * DAY)
    fresh = a.add_thread(title="Pay cut", author="cat", created_at=NOW - 20 * DAY, text="why")
    a.add_reply(topic_id=fresh.topic_id, author="dan", created_at=NOW - 10 * DAY)
    a.add_reply(topic_id=fresh.topic_id, author="eve", created_at=NOW - DAY, reply_to_post_number=2)

    batch = await source(forums, client, history_days=30).poll(cursor={}, validators={}, now=NOW)

    # ids 5, 4, 3 are within 30 days; id 2 (35 days) on the same page ends the walk
    assert ids(batch) == ["2/1", "2/2", "2/3"]
    assert len(forums.posts_requests("/a")) == 1
    assert batch.cursor == {"last_id": 5, "last_time": NOW - DAY}  # id 5 is the newest
    items = {e.item.external_id: e.item for e in batch.envelopes}
    assert items["2/1"].title == "Pay cut" and items["2/1"].text == "why"
    assert items["2/1"].created_at == NOW - 20 * DAY
    assert items["2/3"].parent_id == "2/2"
    assert items["2/2"].parent_id == "2/1"


async def test_poll_add_poll_returns_exactly_the_new_posts(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    first = add_posts(forums.a, 5, start=NOW - 3600)
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert ids(batch) == sorted(first)
    # 5 posts fit one short page; a short page is not taken as the end, so the empty
    # page below id 1 is asked too
    assert len(forums.posts_requests("/a")) == 2

    forums.server.clear()
    thread = forums.a.add_thread(title="New", author="fay", created_at=NOW + 10)
    forums.a.add_reply(topic_id=1, author="gus", created_at=NOW + 20, reply_to_post_number=3)
    forums.a.add_reply(topic_id=thread.topic_id, author="hal", created_at=NOW + 30)
    again = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 60)

    assert ids(again) == ["1/6", "2/1", "2/2"]
    assert {e.item.external_id: e.item.parent_id for e in again.envelopes}["1/6"] == "1/3"
    assert len(forums.posts_requests("/a")) == 1
    assert again.cursor == {"last_id": 8, "last_time": NOW + 30}


async def test_idle_poll_costs_one_conditional_request(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    add_posts(forums.a, 3, start=NOW - 600)
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert batch.validators.get("etag")

    forums.server.clear()
    idle = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 300)
    [request] = forums.posts_requests("/a")
    assert request.headers.get("if-none-match") == batch.validators["etag"]
    assert idle.not_modified is True
    assert idle.envelopes == []
    assert idle.cursor == batch.cursor

    # without validators (e.g. the server sent none) an idle poll is still one request
    forums.server.clear()
    plain = await adapter.poll(cursor=batch.cursor, validators={}, now=NOW + 300)
    assert plain.envelopes == [] and plain.not_modified is False
    assert len(forums.posts_requests("/a")) == 1


async def test_k_new_posts_cost_at_most_pages_plus_one(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    add_posts(forums.a, 10, start=NOW - 3600)
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)

    forums.server.clear()
    new = add_posts(forums.a, 120, start=NOW + 1, title="Flood")
    again = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 600)

    assert ids(again) == sorted(new)
    # pages of 50 from id 130 down: 130-81, 80-31, 30-1 (20 new + the floor 10) -> 3
    requests = len(forums.posts_requests("/a"))
    assert requests == 3
    assert requests <= math.ceil(120 / 50) + 1
    assert again.cursor == {"last_id": 130, "last_time": NOW + 120}


async def test_forums_on_one_server_stay_apart(forums: Forums, client: PoliteClient) -> None:
    add_posts(forums.a, 2, start=NOW - 60, title="In A")
    add_posts(forums.b, 3, start=NOW - 60, title="In B")
    a = await source(forums, client, "/a").poll(cursor={}, validators={}, now=NOW)
    b = await source(forums, client, "/b").poll(cursor={}, validators={}, now=NOW)
    assert ids(a) == ["1/1", "1/2"]
    assert ids(b) == ["1/1", "1/2", "1/3"]
    assert {e.community for e in b.envelopes} == {"b"}
    assert b.envelopes[0].item.url is not None
    assert b.envelopes[0].item.url.startswith(forums.server.base_url + "/b/t/in-b/1/")


async def test_long_backlog_spreads_over_polls_without_gaps(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    adapter.max_pages = 2
    add_posts(forums.a, 10, start=NOW - 3600)
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)

    backlog = add_posts(forums.a, 130, start=NOW + 1, title="Backlog")  # ids 11..140
    forums.server.clear()
    second = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 300)
    # two pages: ids 140..91 and 90..41; ids 40..11 still pending, so it vouches only
    # from id 41 (NOW + 31) on; the walk will vouch from the old floor (id 10's time)
    assert len(second.envelopes) == 100
    assert (second.complete, second.covered_from) == (False, NOW + 31)
    assert second.cursor == {
        "last_id": 10,
        "last_time": NOW - 3600 + 9,
        "pending": {"before": 41, "top": 140, "top_time": NOW + 130, "floor_time": None},
        "vouch_from": NOW - 3600 + 9,
    }

    later = add_posts(forums.a, 5, start=NOW + 400, title="Later")  # ids 141..145
    forums.server.clear()
    third = await adapter.poll(cursor=second.cursor, validators=second.validators, now=NOW + 600)
    # before=41 -> ids 40..1 (reaches 10: range done), then the newest page (145..96)
    assert len(forums.posts_requests("/a")) == 2
    assert third.cursor == {"last_id": 145, "last_time": NOW + 404}
    assert (third.complete, third.covered_from) == (True, NOW - 3600 + 9)
    seen = [e.item.external_id for e in second.envelopes + third.envelopes]
    assert sorted(seen) == sorted(backlog + later)  # every post exactly once


async def test_pending_range_may_take_several_polls(forums: Forums, client: PoliteClient) -> None:
    adapter = source(forums, client)
    add_posts(forums.a, 10, start=NOW - 3600)  # ids 1..10
    start = await adapter.poll(cursor={}, validators={}, now=NOW)
    adapter.max_pages = 1
    backlog = add_posts(forums.a, 130, start=NOW + 1, title="Backlog")  # ids 11..140

    cursor, seen, cursors, claims = start.cursor, [], [], []
    for step in range(3):
        now = NOW + 60 * (step + 1)
        batch = await adapter.poll(cursor=cursor, validators={}, now=now)
        seen += [e.item.external_id for e in batch.envelopes]
        cursor = batch.cursor
        cursors.append(cursor)
        claims.append((batch.complete, batch.covered_from))
    # one page a poll: 140..91 (top pass), 90..41 (pending), 40..1 (reaches id 10); the
    # third has no page left to catch up with the newest post, so the walk goes on
    pending = {"top": 140, "top_time": NOW + 130, "floor_time": None}
    old_floor = {"last_id": 10, "last_time": NOW - 3591}
    assert cursors == [
        {**old_floor, "pending": {"before": 91, **pending}, "vouch_from": NOW - 3591},
        {**old_floor, "pending": {"before": 41, **pending}, "vouch_from": NOW - 3591},
        {"last_id": 140, "last_time": NOW + 130, "vouch_from": NOW - 3591},
    ]
    # from id 91 (NOW + 81) on; then nothing new, as the newest posts are not reached
    assert claims == [(False, NOW + 81), (False, NOW + 120), (False, NOW + 180)]
    later = add_posts(forums.a, 3, start=NOW + 600, title="Later")  # ids 141..143
    final = await adapter.poll(cursor=cursor, validators={}, now=NOW + 900)
    seen += [e.item.external_id for e in final.envelopes]
    assert sorted(seen) == sorted(backlog + later)  # every post exactly once
    assert final.cursor == {"last_id": 143, "last_time": NOW + 602}
    assert (final.complete, final.covered_from) == (True, NOW - 3591)  # 143..94: caught up


async def test_first_poll_cut_short_keeps_its_history_floor(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client, history_days=1)
    adapter.max_pages = 1
    add_posts(forums.a, 20, start=NOW - 3 * DAY, title="Ancient")  # ids 1..20
    recent = add_posts(forums.a, 60, start=NOW - 3600, title="Recent")  # ids 21..80
    first = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert len(first.envelopes) == 50  # ids 80..31
    assert first.cursor["pending"] == {
        "before": 31,
        "top": 80,
        "top_time": NOW - 3600 + 59,
        "floor_time": NOW - DAY,
    }
    assert (first.complete, first.covered_from) == (False, NOW - 3600 + 10)  # from id 31

    second = await adapter.poll(cursor=first.cursor, validators={}, now=NOW + 60)
    # before=31 -> ids 30..1: 30..21 are recent, 20 is 3 days old -> range done, but the
    # page budget is spent before the newest post is reached again
    assert second.cursor == {"last_id": 80, "last_time": NOW - 3600 + 59, "vouch_from": NOW - DAY}
    assert (second.complete, second.covered_from) == (False, NOW + 60)
    seen = [e.item.external_id for e in first.envelopes + second.envelopes]
    assert sorted(seen) == sorted(recent)

    third = await adapter.poll(cursor=second.cursor, validators={}, now=NOW + 120)
    assert third.envelopes == []  # 80..31: nothing above id 80
    assert (third.complete, third.covered_from) == (True, NOW - DAY)  # the first poll's since
    assert third.cursor == {"last_id": 80, "last_time": NOW - 3600 + 59}


STEP = 5 * 3600


def add_history(forum: FakeDiscourse, *, topics: int, per_topic: int, start: int) -> list[str]:
    """``topics`` topics of ``per_topic`` posts, one topic after the other, a post every
    ``STEP`` seconds from ``start``: on an empty forum, post id ``i`` is created at
    ``start + (i - 1) * STEP``. Their external ids."""
    made = []
    for n in range(topics):
        opened = start + n * per_topic * STEP
        first = forum.add_thread(title=f"Topic {n}", author="op", created_at=opened)
        made.append(f"{first.topic_id}/1")
        for k in range(1, per_topic):
            at = opened + k * STEP
            reply = forum.add_reply(topic_id=first.topic_id, author=f"u{k % 5}", created_at=at)
            made.append(f"{reply.topic_id}/{reply.post_number}")
    return made


async def test_a_first_poll_past_the_page_bound_claims_only_what_it_fetched(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client, history_days=400)
    adapter.max_pages = 2  # 100 posts a poll
    start = NOW - 60 * DAY
    made = add_history(forums.a, topics=20, per_topic=13, start=start)  # ids 1..260

    def created(post_id: int) -> int:
        return start + (post_id - 1) * STEP

    first = await adapter.poll(cursor={}, validators={}, now=NOW)
    # ids 260..161: everything from id 161's time on is fetched, nothing before it
    assert len(first.envelopes) == 100
    assert (first.complete, first.covered_from) == (False, created(161))
    soon = add_posts(forums.a, 5, start=NOW + 100, title="Soon")  # ids 261..265

    second = await adapter.poll(cursor=first.cursor, validators={}, now=NOW + 600)
    # the pending range, ids 160..61: far from the newest post, so nothing new is claimed
    assert len(second.envelopes) == 100
    assert (second.complete, second.covered_from) == (False, NOW + 600)

    third = await adapter.poll(cursor=second.cursor, validators={}, now=NOW + 1200)
    # ids 60..11, then 10..1: the last is not older than since, so the range is still open
    assert len(third.envelopes) == 60
    assert (third.complete, third.covered_from) == (False, NOW + 1200)
    later = add_posts(forums.a, 60, start=NOW + 1300, title="Later")  # ids 266..325

    fourth = await adapter.poll(cursor=third.cursor, validators={}, now=NOW + 2400)
    # the page below id 1 is empty: the range is done, every post from since up to id 260
    # is fetched. The one page left: 325..276, all new, so the walk is cut short again and
    # vouches only from id 276 (NOW + 1300 + 10 * 1); the range below inherits since
    assert fourth.requests == 2
    assert (fourth.complete, fourth.covered_from) == (False, NOW + 1310)
    assert fourth.cursor == {
        "last_id": 260,
        "last_time": created(260),
        "pending": {"before": 276, "top": 325, "top_time": NOW + 1359, "floor_time": None},
        "vouch_from": NOW - 400 * DAY,
    }

    fifth = await adapter.poll(cursor=fourth.cursor, validators={}, now=NOW + 3000)
    # 275..226 reaches id 260 (done); then 325..276 reaches 325: caught up with the newest
    # post, so the walk that began at the first poll vouches from its since
    assert fifth.requests == 2
    assert (fifth.complete, fifth.covered_from) == (True, NOW - 400 * DAY)
    assert fifth.cursor == {"last_id": 325, "last_time": NOW + 1359}
    assert not adapter.walk_pending(fifth.cursor)
    batches = [first, second, third, fourth, fifth]
    seen = [e.item.external_id for b in batches for e in b.envelopes]
    assert sorted(seen) == sorted(made + soon + later)  # every post exactly once


async def test_a_backlog_after_an_outage_vouches_from_the_old_floor_once_closed(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    adapter.max_pages = 2
    add_posts(forums.a, 10, start=NOW - 3600)  # ids 1..10; id 10 at NOW - 3591
    before = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert before.cursor == {"last_id": 10, "last_time": NOW - 3591}

    # the outage: 250 posts a minute apart, ids 11..260 (id i at NOW + (i - 10) * 60)
    outage = [
        f"{p.topic_id}/{p.post_number}"
        for k in range(1, 251)
        for p in [forums.a.add_thread(title=f"O{k}", author="o", created_at=NOW + k * 60)]
    ]
    first = await adapter.poll(cursor=before.cursor, validators={}, now=NOW + 16000)
    # 260..161: vouches from id 161 (NOW + 151 * 60) on, not from the last success
    assert (first.complete, first.covered_from) == (False, NOW + 151 * 60)
    assert first.cursor["vouch_from"] == NOW - 3591  # the old floor's time

    second = await adapter.poll(cursor=first.cursor, validators={}, now=NOW + 16600)
    assert (second.complete, second.covered_from) == (False, NOW + 16600)  # 160..61
    late = [  # ids 261..380
        f"{p.topic_id}/{p.post_number}"
        for k in range(120)
        for p in [forums.a.add_thread(title=f"L{k}", author="l", created_at=NOW + 16700 + k)]
    ]

    third = await adapter.poll(cursor=second.cursor, validators={}, now=NOW + 17200)
    # 60..11, then 10..1 reaches id 10: the range is done, but no page is left to catch
    # up with the newest post, so the claim waits for the next poll
    assert (third.complete, third.covered_from) == (False, NOW + 17200)
    assert third.cursor == {"last_id": 260, "last_time": NOW + 15000, "vouch_from": NOW - 3591}
    assert adapter.walk_pending(third.cursor)

    fourth = await adapter.poll(cursor=third.cursor, validators={}, now=NOW + 17800)
    # 380..331, 330..281: cut short again; id 281 was created at NOW + 16720
    assert (fourth.complete, fourth.covered_from) == (False, NOW + 16720)
    assert fourth.cursor["vouch_from"] == NOW - 3591

    fifth = await adapter.poll(cursor=fourth.cursor, validators={}, now=NOW + 18400)
    # 280..231 reaches id 260; 380..331 reaches 380: the gap is closed
    assert (fifth.complete, fifth.covered_from) == (True, NOW - 3591)
    assert fifth.cursor == {"last_id": 380, "last_time": NOW + 16819}
    batches = [first, second, third, fourth, fifth]
    seen = [e.item.external_id for b in batches for e in b.envelopes]
    assert sorted(seen) == sorted(outage + late)  # every post exactly once


async def test_cursors_without_the_new_fields_claim_nothing_they_cannot(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    adapter.max_pages = 2
    add_posts(forums.a, 140, start=NOW - 3600)  # ids 1..140
    # a backlog range as written before last_time, top_time and vouch_from existed
    legacy = {"last_id": 10, "pending": {"before": 41, "top": 140, "floor_time": None}}
    done = await adapter.poll(cursor=legacy, validators={}, now=NOW)
    # 40..1 reaches id 10, 140..91 reaches 140: caught up, but the old floor's time is
    # unknown, so it claims no more than any complete poll (from the last success)
    assert ids(done) == sorted(f"1/{n}" for n in range(11, 41))
    assert (done.complete, done.covered_from) == (True, None)
    assert done.cursor == {"last_id": 140, "last_time": NOW - 3600 + 139}

    # a first poll's range of that time vouches from its floor_time once done
    first_poll = {"last_id": None, "pending": {"before": 41, "top": 140, "floor_time": 0}}
    adapter.max_pages = 1
    open_range = await adapter.poll(cursor=first_poll, validators={}, now=NOW)
    assert (open_range.complete, open_range.covered_from) == (False, NOW)  # 40..1: not done
    closed = await adapter.poll(cursor=open_range.cursor, validators={}, now=NOW + 60)
    assert (closed.complete, closed.covered_from) == (False, NOW + 60)  # below id 1: done
    caught_up = await adapter.poll(cursor=closed.cursor, validators={}, now=NOW + 120)
    assert (caught_up.complete, caught_up.covered_from) == (True, 0)


async def test_a_cut_short_walk_vouches_from_the_lowest_post_it_saw_kept_or_not(
    forums: Forums, client: PoliteClient
) -> None:
    pay = forums.a.add_category(name="Pay")
    for n in range(60):  # ids 1..60 a minute apart; even ids in Pay, odd ids elsewhere
        category = pay.id if n % 2 == 1 else 1
        at = NOW - 3600 + n * 60
        forums.a.add_thread(title=f"T{n}", author="a", created_at=at, category_id=category)
    adapter = source(forums, client, category="pay", history_days=400)
    adapter.max_pages = 1
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    # one page, ids 60..11: kept are the even ones down to id 12, but id 11 (not in Pay,
    # created NOW - 3000) was seen too, and every post from its time on was on the page
    assert ids(batch) == sorted(f"{n}/1" for n in range(12, 61, 2))
    assert (batch.complete, batch.covered_from) == (False, NOW - 3000)


async def test_failed_poll_then_retry_from_the_old_cursor(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    add_posts(forums.a, 4, start=NOW - 600)
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)

    new = add_posts(forums.a, 70, start=NOW + 1, title="During outage")  # ids 5..74
    # the whole poll fails: the first request and its one retry get 500
    forums.server.inject(Fault("status", path_prefix="/a/posts.json", status=500, count=2))
    with pytest.raises(HTTPStatusError) as caught:
        await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 60)
    assert caught.value.status == 500

    # a poll that fails half way: the newest page works, the older page does not
    forums.fail_before = True
    with pytest.raises(HTTPStatusError):
        await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 120)
    forums.fail_before = False

    # nothing was committed, so the old cursor is retried: every new post exactly once
    retry = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 180)
    assert [e.item.external_id for e in retry.envelopes].count("2/1") == 1
    assert ids(retry) == sorted(new)
    assert len(retry.envelopes) == 70
    assert retry.cursor == {"last_id": 74, "last_time": NOW + 70}


async def test_rate_limit_is_surfaced(forums: Forums, client: PoliteClient) -> None:
    add_posts(forums.a, 2, start=NOW - 60)
    forums.server.inject(
        Fault("status", path_prefix="/a/posts.json", status=429, retry_after="3600")
    )
    with pytest.raises(RateLimited) as caught:
        await source(forums, client).poll(cursor={}, validators={}, now=NOW)
    assert caught.value.retry_after > 3500
    assert caught.value.reason == "rate_limited"
    assert len(forums.posts_requests("/a")) == 1  # not asked again before the hour is up


async def test_short_retry_after_is_waited_out(forums: Forums, client: PoliteClient) -> None:
    add_posts(forums.a, 2, start=NOW - 60)
    forums.server.inject(Fault("status", path_prefix="/a/posts.json", status=429, retry_after="0"))
    batch = await source(forums, client).poll(cursor={"last_id": 0}, validators={}, now=NOW)
    assert ids(batch) == ["1/1", "1/2"]
    # the 429, its retry (ids 2, 1), then the empty page below id 1
    assert batch.requests == 3


@pytest.mark.parametrize("kind", ["truncate", "html"])
async def test_broken_body_is_malformed(forums: Forums, client: PoliteClient, kind: str) -> None:
    add_posts(forums.a, 2, start=NOW - 60)
    forums.server.inject(Fault(kind, path_prefix="/a/posts.json"))  # type: ignore[arg-type]
    with pytest.raises(MalformedResponse):
        await source(forums, client).poll(cursor={}, validators={}, now=NOW)


async def test_category_filter_includes_subcategories(forums: Forums, client: PoliteClient) -> None:
    a = forums.a
    pay = a.add_category(name="Pay")  # id 2
    rates = a.add_category(name="Pay rates", parent_id=pay.id)  # id 3
    a.add_category(name="Off topic")  # id 4
    a.add_thread(title="Rates dropped", author="ann", created_at=NOW - 50, category_id=rates.id)
    a.add_thread(title="Cats", author="bob", created_at=NOW - 40, category_id=4)
    a.add_thread(title="Paid late", author="cat", created_at=NOW - 30, category_id=pay.id)
    a.add_reply(topic_id=1, author="dan", created_at=NOW - 20)
    adapter = source(forums, client, category="pay")

    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    # topics 1 (Pay rates) and 3 (Pay); topic 2 (Off topic) is left out
    assert ids(batch) == ["1/1", "1/2", "3/1"]
    assert batch.cursor["category_ids"] == [2, 3]
    assert len(forums.server.requests_to("/a/categories.json")) == 1

    forums.server.clear()
    a.add_reply(topic_id=2, author="eve", created_at=NOW + 10)
    a.add_reply(topic_id=3, author="fay", created_at=NOW + 20)
    again = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 60)
    assert ids(again) == ["3/2"]
    assert forums.server.requests_to("/a/categories.json") == []

    with pytest.raises(UnknownCategory):
        await source(forums, client, category="no-such").poll(cursor={}, validators={}, now=NOW)


async def test_api_key_reaches_a_login_required_forum(forums: Forums, client: PoliteClient) -> None:
    add_posts(forums.private, 2, start=NOW - 60)
    with pytest.raises(HTTPStatusError) as caught:
        await source(forums, client, "/private").poll(cursor={}, validators={}, now=NOW)
    assert caught.value.status == 403

    forums.server.clear()
    keyed = source(forums, client, "/private", api_key="sekret", api_username="monitor")
    batch = await keyed.poll(cursor={}, validators={}, now=NOW)
    assert ids(batch) == ["1/1", "1/2"]
    sent = forums.posts_requests("/private")[0].headers
    assert (sent["api-key"], sent["api-username"]) == ("sekret", "monitor")


async def test_deletions_and_small_actions_in_the_fake(
    forums: Forums, client: PoliteClient
) -> None:
    a = forums.a
    a.add_thread(title="T", author="ann", created_at=NOW - 50)
    withdrawn = a.add_reply(topic_id=1, author="bob", created_at=NOW - 40)
    removed = a.add_reply(topic_id=1, author="cat", created_at=NOW - 30)
    a.add_reply(topic_id=1, author="mod", created_at=NOW - 20, post_type=SMALL_ACTION)
    flagged = a.add_reply(topic_id=1, author="dan", created_at=NOW - 10)
    a.withdraw(withdrawn.id)
    a.delete(removed.id, at=NOW - 5)
    a.hide(flagged.id)

    batch = await source(forums, client).poll(cursor={}, validators={}, now=NOW)
    # /posts.json lists the withdrawn post (marked) but not staff-deleted, hidden or
    # small-action posts, as the real one does for an anonymous visitor
    assert ids(batch) == ["1/1", "1/2"]
    withdrawn_item = next(e.item for e in batch.envelopes if e.item.external_id == "1/2")
    assert withdrawn_item.deleted is True and withdrawn_item.author == "bob"


# -- posts no forum should send ----------------------------------------------------

YEAR_9999 = 253_402_300_799  # 9999-12-31T23:59:59Z


def reasons(batch: Batch) -> Counter[str]:
    """The poll's rejections by reason (the poller counts each rejected post once)."""
    return Counter(reason for reason, _ in batch.rejected)


def odd_post(topic_id: int, number: int, *, post_id: str, created_at: int) -> str:
    """Hand-made: the raw JSON text of one /posts.json entry whose ``id`` is written as
    given (so that ``1e400`` or ``NaN`` reaches the wire as those bytes)."""
    shape = {
        "id": "@ID@",
        "topic_id": topic_id,
        "post_number": number,
        "post_type": 1,
        "category_id": 1,
        "created_at": iso(created_at),
        "username": "mallory",
        "raw": "an odd one",
        "topic_slug": "busy",
    }
    return json.dumps(shape).replace('"@ID@"', post_id)


async def test_a_post_dated_year_9999_is_rejected_and_moves_no_cursor(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    first = add_posts(forums.a, 4, start=NOW - 600)  # ids 1..4, a second apart
    forums.a.add_reply(topic_id=1, author="mallory", created_at=YEAR_9999)  # id 5, "1/5"
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert ids(batch) == sorted(first)
    assert batch.rejected == [("bad_time", "1/5")]
    # neither the id nor the time of id 5 moved the floor: id 4 is the newest placed post
    assert batch.cursor == {"last_id": 4, "last_time": NOW - 600 + 3}

    later = add_posts(forums.a, 3, start=NOW + 10, title="Later")  # ids 6..8
    again = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 60)
    assert ids(again) == sorted(later)
    assert reasons(again) == {"bad_time": 1}  # seen again; the poller counts it once
    assert again.cursor == {"last_id": 8, "last_time": NOW + 12}


async def test_a_post_with_a_huge_id_hides_no_later_post(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    first = add_posts(forums.a, 10, start=NOW - 3600)  # ids 1..10, topic 1
    huge = odd_post(1, 11, post_id=str(10**15), created_at=NOW - 1800)
    forums.a.add_raw_post(huge, listed_as=10**15)  # listed above every other post
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert ids(batch) == sorted([*first, "1/11"])  # an id within bounds, a plausible time
    assert batch.cursor == {"last_id": 10**15, "last_time": NOW - 1800}

    later = add_posts(forums.a, 60, start=NOW + 10, title="Later")  # ids 11..70, topic 2
    again = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 600)
    # ids 11..70 are below 10**15 but newer than last_time: new. Page 1: 10**15 (seen)
    # and 70..22 (new, so the walk goes on); page 2 (before=22): 21..11 new, 10..1 seen
    assert ids(again) == sorted(later)
    assert again.requests == 2
    assert again.cursor == {"last_id": 10**15, "last_time": NOW + 69}

    more = add_posts(forums.a, 3, start=NOW + 700, title="More")  # ids 71..73
    third = await adapter.poll(cursor=again.cursor, validators={}, now=NOW + 900)
    assert ids(third) == sorted(more)


@pytest.mark.parametrize(
    ("written", "reason"),
    [(str(2**60), "bad_id"), ("1e400", "bad_id"), ("NaN", "bad_id"), ("-7", "bad_id")],
)
async def test_a_post_with_an_impossible_id_is_rejected_and_moves_no_cursor(
    forums: Forums, client: PoliteClient, written: str, reason: str
) -> None:
    adapter = source(forums, client)
    first = add_posts(forums.a, 5, start=NOW - 600)  # ids 1..5, topic 1
    forums.a.add_raw_post(odd_post(1, 6, post_id=written, created_at=NOW - 300), listed_as=1e18)
    batch = await adapter.poll(cursor={}, validators={}, now=NOW)
    assert ids(batch) == sorted(first)
    assert reasons(batch) == {reason: 1}
    assert batch.cursor == {"last_id": 5, "last_time": NOW - 600 + 4}

    later = add_posts(forums.a, 3, start=NOW + 10, title="Later")  # ids 6..8
    again = await adapter.poll(cursor=batch.cursor, validators=batch.validators, now=NOW + 60)
    assert ids(again) == sorted(later)
    assert reasons(again) == {reason: 1}  # listed again; the poller counts it once


async def test_a_cursor_an_impossible_id_once_moved_recovers(
    forums: Forums, client: PoliteClient
) -> None:
    adapter = source(forums, client)
    add_posts(forums.a, 5, start=NOW - 600)  # ids 1..5
    # as this adapter wrote it after a post of id 2**60, before its floor had a time
    cursor: dict[str, Any] = {"last_id": 2**60}
    first = await adapter.poll(cursor=cursor, validators={}, now=NOW)
    # every listed id is below the cursor, so nothing is new; the time floor is learned
    assert ids(first) == []
    assert first.cursor == {"last_id": 2**60, "last_time": NOW - 600 + 4}

    later = add_posts(forums.a, 2, start=NOW + 10, title="Later")  # ids 6, 7
    again = await adapter.poll(cursor=first.cursor, validators={}, now=NOW + 60)
    assert ids(again) == sorted(later)


def recorded(real_samples: Path, name: str) -> Any:
    return json.loads((real_samples / "discourse" / name).read_text())


def fetch_json(forums: Forums, path: str) -> Any:
    with urllib.request.urlopen(forums.server.base_url + path, timeout=5) as reply:
        return json.loads(reply.read())


def test_fake_speaks_the_recorded_shapes(forums: Forums, real_samples: Path) -> None:
    a = forums.a
    sub = a.add_category(name="Filler")
    a.add_category(name="Sub filler", parent_id=sub.id)
    for n in range(31):  # 31 topics: /latest.json pages of 30
        a.add_thread(title=f"Topic {n}", author="ann", created_at=NOW + n, category_id=sub.id)
    for n in range(20):  # topic 1 gets 21 posts: /t/1.json holds 20 inline
        a.add_reply(topic_id=1, author="bob", created_at=NOW + 100 + n)

    latest0 = fetch_json(forums, "/a/latest.json")
    latest1 = fetch_json(forums, "/a/latest.json?page=1")
    real_latest = recorded(real_samples, "latest_page1.json")
    assert set(latest0) <= set(recorded(real_samples, "latest_page0.json"))
    assert set(latest0["topic_list"]["topics"][0]) <= set(real_latest["topic_list"]["topics"][0])
    assert len(latest0["topic_list"]["topics"]) == 30
    assert latest0["topic_list"]["more_topics_url"] == "/a/latest?no_definitions=true&page=1"
    assert latest0["topic_list"]["topics"][0]["id"] == 1  # bumped by its replies
    assert len(latest1["topic_list"]["topics"]) == 1
    assert "more_topics_url" not in latest1["topic_list"]

    topic = fetch_json(forums, "/a/t/topic-0/1.json")
    page2 = fetch_json(forums, "/a/t/1.json?page=2")
    real_topic = recorded(real_samples, "t_26.json")
    assert set(topic) <= set(real_topic)
    assert set(topic["post_stream"]["posts"][0]) <= set(real_topic["post_stream"]["posts"][0])
    assert len(topic["post_stream"]["posts"]) == 20 and len(topic["post_stream"]["stream"]) == 21
    assert [p["post_number"] for p in page2["post_stream"]["posts"]] == [21]

    posts = fetch_json(forums, "/a/posts.json")["latest_posts"]
    real_post = recorded(real_samples, "cf_posts.json")["latest_posts"][0]
    assert set(posts[0]) <= set(real_post)
    assert len(posts) == 50 and posts[0]["id"] == 51
    older = fetch_json(forums, "/a/posts.json?before=2")["latest_posts"]
    assert [p["id"] for p in older] == [1]

    categories = fetch_json(forums, "/a/categories.json")["category_list"]["categories"]
    real_category = recorded(real_samples, "categories.json")["category_list"]["categories"][0]
    assert set(categories[0]) <= set(real_category)
    assert [(c["slug"], c["subcategory_ids"]) for c in categories] == [
        ("uncategorized", []),
        ("filler", [3]),
    ]


# -- through the whole service -----------------------------------------------------


async def test_the_store_claims_coverage_only_where_every_post_was_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forum = FakeDiscourse(prefix="/forum")
    router = Router()
    forum.register(router)
    start = NOW - 60 * DAY
    add_history(forum, topics=20, per_topic=13, start=start)  # id i at start + (i-1)*STEP
    monkeypatch.setattr(Discourse, "max_pages", 2)  # 100 posts a poll
    clock = [NOW]
    with FakeForumServer(router) as server:
        community = {"id": "forum", "source": "discourse", "history_days": 400}
        config = service_config(tmp_path, [{**community, "base_url": server.base_url + "/forum"}])
        service = Service(
            settings_from_mapping(config), registry=CollectorRegistry(), clock=lambda: clock[0]
        )
        await service.open()
        assert service.engine is not None
        forum_config = service.settings.communities[0]

        def covered() -> list[tuple[int, int]]:
            with Session(service.engine) as session:
                return covered_spans(session, community_id="forum", since=NOW - 500 * DAY)

        try:
            first = await service.poll(forum_config)
            assert (first.outcome, first.new_items, first.requests) == ("ok", 100, 2)
            # ids 260..161 stored: covered from id 161's time, and no earlier
            assert covered() == [(start + 160 * STEP, NOW)]
            unfetched = [start + (i - 1) * STEP for i in range(1, 161)]
            assert all(moment < start + 160 * STEP for moment in unfetched)

            outcomes = []
            for step in (1, 2, 3):
                clock[0] = NOW + step * 600
                outcomes.append(await service.poll(forum_config))
                if step < 3:  # working on the range below: no new coverage
                    assert covered() == [(start + 160 * STEP, NOW)]
            # 160..61; 60..11 and 10..1; the empty page below id 1, then the newest page
            assert [(o.outcome, o.new_items, o.requests) for o in outcomes] == [
                ("ok", 100, 2),
                ("ok", 60, 2),
                ("ok", 0, 2),
            ]
            # the walk is done and caught up: covered from the first poll's history_days
            assert covered() == [(NOW - 400 * DAY, NOW + 1800)]
            assert stored_posts(service.engine, "forum") == (260, 260)
        finally:
            await service.stop()
