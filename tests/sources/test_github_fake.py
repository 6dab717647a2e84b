"""The GitHub Discussions adapter against a fake GraphQL API over real sockets on 127.0.0.1.

The fake executes the adapter's own query text against the part of GitHub's schema it
uses (``monitor/fakeforum/github.py``). Every post is made by the test, so expected ids,
counts and request numbers follow from what each test adds, from pages of 10 discussions
with their last 10 comments and those comments' last 10 replies, from follow-up pages of
100, and from the 120 s a walk looks below the newest activity it saw.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import Settings, settings_from_mapping
from monitor.errors import HTTPStatusError, RateLimited
from monitor.fakeforum.github import SCHEMA_SDL, FakeGitHub, query_cost
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Fault, Request, Router
from monitor.service import Service
from monitor.sources.base import Batch
from monitor.sources.github import (
    CATEGORIES_QUERY,
    COMMENTS_QUERY,
    DISCUSSIONS_QUERY,
    REPLIES_QUERY,
    GitHub,
    GraphQLFailure,
    RepositoryNotFound,
    UnknownCategory,
)
from monitor.telemetry import Telemetry
from tests.sources.polling import SourcePoller
from tests.support import FAULT_HTTP, FAULTS, service_config, stored_posts

NOW = 1_750_000_000
DAY = 86400
HOUR = 3600
REPO = "acme/widgets"
TOKEN = "fake-github-token"


@pytest.fixture
def fake() -> FakeGitHub:
    made = FakeGitHub()
    made.add_repository(REPO)
    return made


@pytest.fixture
def server(fake: FakeGitHub) -> Iterator[FakeForumServer]:
    router = Router()
    fake.register(router)
    with FakeForumServer(router) as running:
        yield running


def make_settings(server: FakeForumServer, *, token: str = TOKEN, **community: Any) -> Settings:
    return settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "github": {"token": token},
            "communities": [
                {
                    "id": "widgets",
                    "source": "github",
                    "repository": REPO,
                    "base_url": server.base_url,
                    "history_days": 30,
                    **community,
                }
            ],
        }
    )


Poller = partial(SourcePoller, GitHub, now=NOW)


@pytest.fixture
async def poller(server: FakeForumServer, telemetry: Telemetry) -> Any:
    polling = Poller(telemetry, make_settings(server))
    yield polling
    await polling.client.aclose()


def ids(batch: Batch) -> set[str]:
    return {e.item.external_id for e in batch.envelopes}


def discussion_with_talk(fake: FakeGitHub, at: int, **extra: Any) -> list[str]:
    """A discussion at ``at``, a comment 10 s later and a reply to it 10 s after that."""
    thread = fake.add_discussion(REPO, created=at, **extra)
    comment = fake.add_comment(thread, created=at + 10)
    return [thread, comment, fake.add_reply(comment, created=at + 20)]


# -- the fake and the queries ------------------------------------------------------


def test_the_queries_are_valid_against_githubs_schema_and_cost_one_point_each() -> None:
    from graphql import build_schema, parse, validate

    schema = build_schema(SCHEMA_SDL)
    sizes = {"first": 10, "comments": 10, "replies": 10, "last": 100}
    for query in (DISCUSSIONS_QUERY, COMMENTS_QUERY, REPLIES_QUERY, CATEGORIES_QUERY):
        assert validate(schema, parse(query)) == []
        # discussions 1 + comments 10 + replies 10 x 10 = 111; comments 1 + replies 100 = 101;
        # replies 1; categories 1: each rounds to 1 point
        assert query_cost(query, sizes) == 1


def test_the_cost_formula_gives_githubs_documented_example() -> None:
    """GitHub's rate-limit page: 1 request for 100 repositories, 100 for their 50 issues
    each, 5,000 for those issues' 60 labels each: 5,101, so 51 points."""
    query = """query { viewer { login repositories(first: 100) { edges { node { id
      issues(first: 50) { edges { node { id labels(first: 60) { edges { node { id name
      } } } } } } } } } } }"""
    assert query_cost(query, {}) == 51


def test_the_fake_renders_the_recorded_shape(fake: FakeGitHub, real_samples: Path) -> None:
    recorded = json.loads(
        (
            real_samples / "github-discussions" / "discussions_page1_with_comments_replies.json"
        ).read_bytes()
    )["data"]["repository"]["discussions"]
    talk = discussion_with_talk(fake, NOW - HOUR)
    ours = fake._discussions(fake.repositories[REPO], {"first": 10})
    node, theirs = ours["nodes"][0], recorded["nodes"][4]  # #2938: one comment
    for key in ("id", "url", "number", "title", "createdAt"):
        assert type(node[key]) is type(theirs[key])
    assert node["createdAt"].endswith("Z") and len(node["createdAt"]) == 20
    assert node["id"] == talk[0] and set(ours["pageInfo"]) == set(recorded["pageInfo"])


# -- polls ---------------------------------------------------------------------------


async def test_cycles_return_exactly_the_new_posts_at_the_request_bound(
    fake: FakeGitHub, server: FakeForumServer, poller: SourcePoller
) -> None:
    first = [p for n in range(5) for p in discussion_with_talk(fake, NOW - 10 * DAY + n * 60)]
    batch = await poller.poll()
    assert ids(batch) == set(first) and batch.requests == 1 and batch.complete
    idle = await poller.poll()
    assert (ids(idle), idle.requests) == (set(), 1)
    # rounds a day apart, a discussion a minute, each with a comment and a reply: a walk
    # lists the K new ones, the previous round's discussions of the 120 s below its
    # newest (3, at 0, 60 and 120 s below: unchanged, they cost nothing more; 1 after a
    # round of one) and the one that ends it
    expected_requests = {
        1: 1,  # 1 + 3 + 1 = 5 listed: one page
        6: 1,  # 6 + 1 + 1 = 8
        7: 2,  # 7 + 3 + 1 = 11
        10: 2,  # 10 + 3 + 1 = 14
        25: 3,  # 25 + 3 + 1 = 29
    }
    for day, (count, requests) in enumerate(expected_requests.items()):
        start = NOW - (9 - day) * DAY
        made = [p for n in range(count) for p in discussion_with_talk(fake, start + n * 60)]
        batch = await poller.poll()
        assert ids(batch) == set(made)  # 3 posts a discussion, each once
        assert batch.complete and batch.covered_from is None
        assert batch.requests == requests <= math.ceil(count / 10) + 1
    assert {cost for _, _, cost in fake.queries} == {1}


async def test_a_comment_on_an_old_discussion_is_found_in_one_request(
    fake: FakeGitHub, poller: SourcePoller
) -> None:
    old = fake.add_discussion(REPO, created=NOW - 20 * DAY)
    for n in range(12):
        fake.add_discussion(REPO, created=NOW - 10 * DAY + n * 600)
    await poller.poll()
    comment = fake.add_comment(old, created=NOW - 60)
    batch = await poller.poll()
    assert (ids(batch), batch.requests) == ({comment}, 1)  # not the 20-day-old thread again
    (envelope,) = batch.envelopes
    assert (envelope.item.thread_id, envelope.item.parent_id) == (old, old)


async def test_a_reply_to_an_old_comment_of_a_long_discussion_is_found(
    fake: FakeGitHub, poller: SourcePoller
) -> None:
    thread = fake.add_discussion(REPO, created=NOW - 5 * DAY)
    comments = [fake.add_comment(thread, created=NOW - 5 * DAY + n * 60) for n in range(25)]
    first = await poller.poll()
    # 25 comments: the page shows the last 10, one follow-up fetches the 15 before
    assert (len(ids(first)), first.requests) == (26, 2)
    late = fake.add_reply(comments[0], created=NOW - 30)
    batch = await poller.poll()
    # the reply is under the oldest comment, which no page of the last 10 shows: the
    # discussion is read whole again (1 page + 1 follow-up) and only the reply is new
    assert (ids(batch), batch.requests) == ({late}, 2)
    assert batch.envelopes[0].item.parent_id == comments[0]


async def test_replies_past_the_window_are_fetched_back_to_the_floor(
    fake: FakeGitHub, poller: SourcePoller
) -> None:
    thread = fake.add_discussion(REPO, created=NOW - 3 * DAY)
    comment = fake.add_comment(thread, created=NOW - 3 * DAY + 60)
    replies = [fake.add_reply(comment, created=NOW - 2 * DAY + n * 60) for n in range(35)]
    first = await poller.poll()
    # the last 10 replies shown, the 25 before in one follow-up of up to 100
    assert (ids(first), first.requests) == ({thread, comment, *replies}, 2)
    more = [fake.add_reply(comment, created=NOW - HOUR + n * 60) for n in range(12)]
    batch = await poller.poll()
    # the 10 newest shown are all new: one follow-up, whose 2 newest are new too and whose
    # older ones lie below the floor, ends the comment's walk back
    assert (ids(batch), batch.requests) == (set(more), 2)


async def test_a_walk_cut_short_goes_on_and_coverage_claims_only_what_was_read(
    fake: FakeGitHub, poller: SourcePoller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GitHub, "discussions_page", 3)
    monkeypatch.setattr(GitHub, "max_requests", 2)
    made = [fake.add_discussion(REPO, created=NOW - 20 * HOUR + n * HOUR) for n in range(10)]
    first = await poller.poll()
    # two pages of 3, newest first: discussions 9..4; the rest next poll. Coverage from
    # just above discussion 4's activity: every newer post is in a discussion it read
    assert ids(first) == set(made[4:]) and first.requests == 2
    assert (first.complete, first.covered_from) == (False, NOW - 16 * HOUR + 1)
    assert poller.cursor["floor"] == NOW - 30 * DAY  # history_days: the walk's floor
    bumped = fake.add_comment(made[1], created=NOW - 60)  # moves above the cut meanwhile
    second = await poller.poll()
    # below the cut the list holds 3, 2 and 0 (1 moved up): one page, the end. Then from
    # the newest, down to 120 s below the walk's newest activity so far (9's): 1 (read
    # whole: its thread, never reported, and the new comment), 9 (unchanged), and 8 ends
    # it. All 10 are read: the walk, whole now, vouches from its floor, history_days back
    assert ids(second) == {made[0], made[2], made[3], made[1], bumped}
    assert second.requests == 2
    assert (second.complete, second.covered_from) == (True, NOW - 30 * DAY)
    assert "floor" not in poller.cursor and "pending" not in poller.cursor
    assert poller.cursor["mark"] == NOW - 60
    assert (await poller.poll()).requests == 1  # idle again


async def test_a_discussion_too_large_for_one_poll_is_kept_as_read_and_the_walk_goes_on(
    fake: FakeGitHub, poller: SourcePoller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GitHub, "max_requests", 3)
    monkeypatch.setattr(GitHub, "follow_page", 5)
    older = fake.add_discussion(REPO, created=NOW - 2 * DAY)
    huge = fake.add_discussion(REPO, created=NOW - DAY)
    comments = [fake.add_comment(huge, created=NOW - DAY + n * 60) for n in range(40)]
    first = await poller.poll()
    # 1 page (the last 10 comments) + 2 follow-ups of 5: 20 of 40 comments, and the budget
    # is spent. They are kept, and the walk goes on: the older discussion, on the same
    # page, needs no request. The walk is whole but for the huge discussion's first 20
    # comments, which lie at or before its activity: coverage starts just after it
    assert ids(first) == {huge, *comments[20:], older} and first.requests == 3
    newest = NOW - DAY + 39 * 60
    assert (first.complete, first.covered_from) == (True, newest + 1)
    second = await poller.poll()
    assert (ids(second), second.requests) == (set(), 1)  # no stall, no rereading


async def test_a_category_is_resolved_once_and_filters_the_list(
    fake: FakeGitHub, server: FakeForumServer, telemetry: Telemetry
) -> None:
    general = fake.add_discussion(REPO, created=NOW - HOUR, category="General")
    question = fake.add_discussion(REPO, created=NOW - 2 * HOUR, category="Q&A")
    polling = Poller(telemetry, make_settings(server, category="q-a"))  # the slug
    try:
        first = await polling.poll()
        assert ids(first) == {question} and first.requests == 2  # categories, one page
        assert polling.cursor["category"] == {
            "name": "q-a",
            "id": fake.category_id(REPO, "Q&A"),
        }
        fake.add_comment(general, created=NOW - 60)
        idle = await polling.poll()
        assert (ids(idle), idle.requests) == (set(), 1)
        asked = [variables.get("categoryId") for name, variables, _ in fake.queries]
        assert asked == [None, fake.category_id(REPO, "Q&A"), fake.category_id(REPO, "Q&A")]
    finally:
        await polling.client.aclose()


async def test_an_unknown_category_names_the_ones_there_are(
    server: FakeForumServer, telemetry: Telemetry
) -> None:
    polling = Poller(telemetry, make_settings(server, category="Announcements"))
    try:
        with pytest.raises(UnknownCategory, match=r"no discussion category 'Announcements'"):
            await polling.poll()
    finally:
        await polling.client.aclose()


@pytest.mark.parametrize("case", ["unknown", "turned off"])
async def test_a_repository_that_is_not_there_or_has_no_discussions_is_a_404(
    fake: FakeGitHub, server: FakeForumServer, telemetry: Telemetry, case: str
) -> None:
    if case == "unknown":
        settings = make_settings(server, repository="acme/nothing")
    else:
        fake.add_repository("acme/quiet", enabled=False)
        settings = make_settings(server, repository="acme/quiet")
    polling = Poller(telemetry, settings)
    try:
        with pytest.raises(RepositoryNotFound) as caught:
            await polling.poll()
        assert (caught.value.status, caught.value.reason) == (404, "http_4xx")
        assert settings.communities[0].repository in str(caught.value)  # type: ignore[attr-defined]
        assert polling.cursor == {}
    finally:
        await polling.client.aclose()


async def test_a_missing_or_wrong_token_says_so_without_showing_it(
    server: FakeForumServer, telemetry: Telemetry
) -> None:
    polling = Poller(telemetry, make_settings(server, token="ghp_wrong-token-4242"))
    try:
        with pytest.raises(HTTPStatusError) as caught:
            await polling.poll()
        assert caught.value.status == 401
        assert "token" in str(caught.value) and "missing, expired or revoked" in str(caught.value)
        assert "ghp_wrong-token-4242" not in str(caught.value)
        sent = {r.headers.get("authorization") for r in server.requests}
        assert sent == {"bearer ghp_wrong-token-4242"}  # to the configured origin only
    finally:
        await polling.client.aclose()


RATE_LIMITED = [
    # hand-made in the shapes reported from GitHub (renovatebot/renovate#21861,
    # yanyongyu/githubkit#271); no recording holds one
    {"type": "RATE_LIMITED", "message": "API rate limit exceeded for installation ID 9306189."},
    {
        "type": "RATE_LIMIT",
        "code": "graphql_rate_limit",
        "message": "API rate limit already exceeded for user ID 1.",
    },
]


@pytest.mark.parametrize("error", RATE_LIMITED, ids=["RATE_LIMITED", "RATE_LIMIT"])
@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"Retry-After": "42"}, 42, 42),
        ({"X-RateLimit-Reset": "in 900 s"}, 890, 900),  # a Unix time, made when the test runs
        ({}, 60, 60),
    ],
    ids=["retry-after", "reset", "neither"],
)
async def test_a_rate_limited_answer_with_http_200_is_rate_limited_until_told(
    fake: FakeGitHub,
    poller: SourcePoller,
    error: dict[str, Any],
    headers: dict[str, str],
    low: float,
    high: float,
) -> None:
    fake.add_discussion(REPO, created=NOW - HOUR)
    if "X-RateLimit-Reset" in headers:
        headers = {"X-RateLimit-Reset": str(int(time.time()) + 900)}
    fake.fail_next([error], **headers)
    with pytest.raises(RateLimited) as caught:
        await poller.poll()
    assert low <= caught.value.retry_after <= high and caught.value.reason == "rate_limited"
    assert poller.client.blocked_until("127.0.0.1") > time.time() + low - 15
    assert poller.cursor == {}


async def test_the_budget_in_the_body_reaches_the_gauge_and_a_spent_one_pauses_the_host(
    fake: FakeGitHub,
    server: FakeForumServer,
    poller: SourcePoller,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FakeGitHub, "_headers", lambda self: {})  # the body alone tells
    fake.add_discussion(REPO, created=NOW - HOUR)
    await poller.poll()
    gauge = {"host": "127.0.0.1"}
    assert registry.get_sample_value("forum_monitor_rate_limit_remaining", gauge) == 4999
    fake.used = fake.limit - 1  # the next query spends the last point
    await poller.poll()
    assert registry.get_sample_value("forum_monitor_rate_limit_remaining", gauge) == 0
    sent = len(server.requests)
    with pytest.raises(RateLimited):  # paused until resetAt (capped at an hour): not sent
        await poller.poll()
    assert len(server.requests) == sent


async def test_any_other_graphql_error_fails_the_poll_naming_its_type(
    fake: FakeGitHub, poller: SourcePoller
) -> None:
    fake.add_discussion(REPO, created=NOW - HOUR)
    fake.fail_next([{"type": "MAX_NODE_LIMIT_EXCEEDED", "message": "too\nmany nodes"}])
    with pytest.raises(GraphQLFailure) as caught:
        await poller.poll()
    assert caught.value.reason == "malformed" and "MAX_NODE_LIMIT_EXCEEDED" in str(caught.value)
    assert "\n" not in str(caught.value)  # the server's words are quoted escaped


async def test_a_discussion_deleted_between_the_list_and_its_follow_up_is_gone(
    fake: FakeGitHub, server: FakeForumServer, telemetry: Telemetry, real_samples: Path
) -> None:
    """The follow-up answers the recorded NOT_FOUND body (HTTP 200, ``data.node`` null)."""
    gone_body = (real_samples / "github-discussions" / "error_not_found_node.json").read_bytes()
    doomed = fake.add_discussion(REPO, created=NOW - 2 * HOUR)
    for n in range(15):
        fake.add_comment(doomed, created=NOW - 2 * HOUR + n)
    kept = fake.add_discussion(REPO, created=NOW - 3 * HOUR)
    inner = server.handler

    def deleting(request: Request) -> FakeResponse:
        if json.loads(request.body).get("operationName") == "DiscussionComments":
            return FakeResponse(200, gone_body, {"Content-Type": "application/json"})
        return inner(request)

    server.handler = deleting
    polling = Poller(telemetry, make_settings(server))
    try:
        batch = await polling.poll()
        assert ids(batch) == {kept} and batch.complete  # the walk went on past it
    finally:
        await polling.client.aclose()


async def test_ghosts_and_deleted_comments_count_without_an_author(
    fake: FakeGitHub, poller: SourcePoller
) -> None:
    thread = fake.add_discussion(REPO, created=NOW - HOUR, author=None)
    comment = fake.add_comment(thread, created=NOW - 50 * 60, author="carol")
    reply = fake.add_reply(comment, created=NOW - 40 * 60, author="dave")
    fake.delete(comment)  # it has a reply: GitHub keeps it, deleted
    items = {e.item.external_id: e.item for e in (await poller.poll()).envelopes}
    assert items[thread].author is None and not items[thread].deleted
    assert (items[comment].author, items[comment].text, items[comment].deleted) == (
        None,
        "",
        True,
    )
    assert items[reply].author == "dave"


async def test_a_cursor_of_another_repository_starts_afresh(
    fake: FakeGitHub, server: FakeForumServer, telemetry: Telemetry
) -> None:
    fake.add_repository("acme/gadgets")
    gadget = fake.add_discussion("acme/gadgets", created=NOW - 5 * DAY)
    polling = Poller(telemetry, make_settings(server))
    try:
        fake.add_discussion(REPO, created=NOW - HOUR)
        await polling.poll()
        polling.settings = make_settings(server, repository="acme/gadgets")
        batch = await polling.poll()
        assert ids(batch) == {gadget}  # its history_days, not the widgets' mark
    finally:
        await polling.client.aclose()


# -- through the whole service -----------------------------------------------------


def service_settings(server: FakeForumServer, tmp_path: Path) -> dict[str, Any]:
    community = {"id": "widgets", "source": "github", "repository": REPO}
    data = service_config(tmp_path, [{**community, "base_url": server.base_url}], **FAULT_HTTP)
    return {**data, "github": {"token": TOKEN}}


async def test_no_author_name_or_profile_link_reaches_the_store(
    fake: FakeGitHub, server: FakeForumServer, tmp_path: Path
) -> None:
    now = int(time.time())
    thread = fake.add_discussion(REPO, created=now - 600, author="alice_maintainer")
    comment = fake.add_comment(thread, created=now - 300, author="bob_contributor")
    fake.add_reply(comment, created=now - 200, author=None)
    service = Service(
        settings_from_mapping(service_settings(server, tmp_path)), registry=CollectorRegistry()
    )
    await service.open()
    try:
        (polled,) = await service.poll_all()
        assert (polled.outcome, polled.new_items) == ("ok", 3)
    finally:
        await service.stop()
    with sqlite3.connect(tmp_path / "store.db") as db:
        dump = "\n".join(db.iterdump())
    assert dump.count('INSERT INTO "posts"') == 3 and thread in dump
    assert "alice_maintainer" not in dump and "bob_contributor" not in dump
    assert "/discussions/1#discussioncomment-" in dump  # the links kept name no one
    assert TOKEN not in dump


@pytest.mark.parametrize(("fault", "reason"), FAULTS, ids=[r for _, r in FAULTS])
async def test_every_fault_is_counted_then_nothing_lost_or_duplicated(
    fake: FakeGitHub, server: FakeForumServer, tmp_path: Path, fault: Fault, reason: str
) -> None:
    import asyncio

    now = int(time.time())
    first = [p for n in range(3) for p in discussion_with_talk(fake, now - 10 * HOUR + n * 60)]
    service = Service(
        settings_from_mapping(service_settings(server, tmp_path)), registry=CollectorRegistry()
    )
    await service.open()
    try:
        (ok,) = await service.poll_all()
        assert (ok.outcome, ok.new_items) == ("ok", 9)
        later = [p for n in range(4) for p in discussion_with_talk(fake, now - 5 * HOUR + n * 60)]
        server.inject(replace(fault, path_prefix="/graphql"))
        (failed,) = await service.poll_all()
        assert failed.outcome == reason
        labels = {"community": "widgets", "source": "github", "reason": reason}
        assert service.registry.get_sample_value("forum_monitor_poll_failures_total", labels) == 1
        if reason == "rate_limited":
            await asyncio.sleep(3.1)  # the server asked for 3 s; a poll before is deferred
        (recovered,) = await service.poll_all()
        assert (recovered.outcome, recovered.new_items) == ("ok", 12)
        assert service.engine is not None
        assert stored_posts(service.engine, "widgets") == (len(first + later),) * 2
    finally:
        await service.stop()
