"""``forum-monitor backfill``: past activity into the store, beside the poller, never twice.

Fake Discourse and Reddit forums on 127.0.0.1; every expected number follows
from what the test adds to them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from monitor.analysis.coverage import covered_spans
from monitor.backfill import Backfiller, BackfillOutcome, BackfillProgress
from monitor.config import settings_from_mapping
from monitor.fakeforum.discourse import FakeDiscourse, iso
from monitor.fakeforum.hackernews import FakeHackerNews
from monitor.fakeforum.mastodon import FakeMastodon
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Fault, Request, Router
from monitor.ingest import load_poll_state
from monitor.service import Service
from monitor.sources import discourse, hackernews, mastodon, reddit
from monitor.store.models import PollRun, PollState
from tests.support import open_backfill, service_config, stored_posts

NOW = int(time.time()) // 60 * 60
DAY = 86400


class Forums:
    def __init__(self) -> None:
        self.discourse = FakeDiscourse(prefix="/forum")
        self.reddit = FakeReddit()
        self.reddit.add_subreddit("gigwork")
        self.mastodon = FakeMastodon(prefix="/masto")
        self.hn = FakeHackerNews()
        router = Router()
        self.discourse.register(router)
        self.reddit.register(router)
        self.mastodon.register(router)
        self.hn.register(router, prefix="/hn")
        self.server = FakeForumServer(router)

    def discourse_history(self) -> None:
        """10 topics 20 days back, then 60 topics with one reply each over the last 8 days."""
        for n in range(10):
            self.discourse.add_thread(title=f"Old {n}", author="d0", created_at=NOW - 20 * DAY + n)
        for n in range(60):
            at = NOW - 8 * DAY + n * 3 * 3600  # every 3 hours, the last one 15 h ago
            post = self.discourse.add_thread(title=f"Topic {n}", author=f"d{n % 5}", created_at=at)
            self.discourse.add_reply(topic_id=post.topic_id, author=f"d{n % 3}", created_at=at + 60)

    def reddit_history(self) -> None:
        """150 submissions, one every 2880 s back from NOW - 2880, each with a reply 60 s later."""
        for k in range(150, 0, -1):  # oldest first
            at = NOW - k * 2880
            thread = self.reddit.add_thread("gigwork", created=at, author=f"r{k % 7}")
            self.reddit.add_reply(thread, created=at + 60, author=f"r{(k + 1) % 7}")


def config(base_url: str, tmp_path: Path) -> dict[str, Any]:
    return service_config(
        tmp_path,
        [
            {
                "id": "forum",
                "source": "discourse",
                "base_url": base_url + "/forum",
                "history_days": 10,
            },
            {"id": "gig", "source": "reddit", "subreddit": "gigwork", "base_url": base_url},
            {
                "id": "tag",
                "source": "mastodon",
                "base_url": base_url + "/masto",
                "hashtag": "gigwork",
            },
            {
                "id": "hnq",
                "source": "hackernews",
                "query": "gig",
                "base_url": base_url + "/hn",
                "search_base_url": base_url + "/hn",
            },
        ],
    )


@pytest.fixture
def forums() -> Iterator[Forums]:
    forums = Forums()
    with forums.server:
        yield forums


async def opened(forums: Forums, tmp_path: Path) -> tuple[Service, Backfiller]:
    return await open_backfill(
        settings_from_mapping(config(forums.server.base_url, tmp_path)), now=NOW
    )


def community(service: Service, name: str) -> Any:
    return next(c for c in service.settings.communities if c.id == name)


def posts(service: Service, name: str) -> tuple[int, int]:
    """(rows, distinct external ids) stored for community ``name``."""
    assert service.engine is not None
    return stored_posts(service.engine, name)


async def test_discourse_backfill_walks_in_steps_and_leaves_the_poll_cursor_alone(
    forums: Forums, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forums.discourse_history()
    monkeypatch.setattr(discourse.Discourse, "max_pages", 1)  # 50 posts a poll
    service, backfiller = await opened(forums, tmp_path)
    steps: list[BackfillProgress] = []
    try:
        outcome = await backfiller.run(
            community(service, "forum"), days=10, on_progress=steps.append
        )
        # 120 posts in the last 10 days, 50 a step: 50 + 50 + 20 (the third page also
        # holds the 10 old posts, which end the walk below and are not kept); the fourth
        # step's page is the newest again: caught up, the walk vouches for its 10 days
        assert outcome == BackfillOutcome(
            "forum",
            "discourse",
            "ok",
            new_items=120,
            requests=4,
            steps=4,
            covered_from=NOW - 10 * DAY,
            stopped="reached",
        )
        assert [s.new_items for s in steps] == [50, 100, 120, 120]
        assert steps[-1].oldest == NOW - 8 * DAY
        assert posts(service, "forum") == (120, 120)
        assert service.engine is not None
        with Session(service.engine) as session:
            # the poller's state is as new: its first poll will start from scratch
            assert load_poll_state(session, "forum") == ({}, {})
            state = session.get(PollState, "forum")
            assert state is not None and state.last_success_at is None
            runs = session.exec(select(PollRun).where(PollRun.community_id == "forum")).all()
            assert [(r.outcome, r.covered_from, r.finished_at) for r in runs] == [
                ("backfill", NOW - 10 * DAY, NOW)
            ]
            assert covered_spans(session, community_id="forum", since=NOW - 30 * DAY) == [
                (NOW - 10 * DAY, NOW)
            ]

        # the regular first poll starts where the stored data ends (the newest post, 15 h
        # old, less an hour), not 10 days back: one page reaches that far, so the walk is
        # done and the next poll is a 304 (before, it walked the 10 days again in 3 polls)
        polled = [await service.poll(community(service, "forum")) for _ in range(2)]
        assert [(p.outcome, p.requests, p.new_items) for p in polled] == [
            ("ok", 1, 0),
            ("not_modified", 1, 0),
        ]
        assert posts(service, "forum") == (120, 120)
        with Session(service.engine) as session:
            # the poll's span (from 16 h back) joins the backfill's
            assert covered_spans(session, community_id="forum", since=NOW - 30 * DAY) == [
                (NOW - 10 * DAY, NOW)
            ]

        # a second backfill finds everything stored already
        again = await backfiller.run(community(service, "forum"), days=10)
        assert (again.outcome, again.new_items, again.steps) == ("ok", 0, 4)
        assert posts(service, "forum") == (120, 120)
    finally:
        await service.stop()


async def test_reddit_backfill_past_the_listing_horizon_is_partial(
    forums: Forums, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forums.reddit_history()
    monkeypatch.setattr(reddit, "MAX_PAGES", 1)  # the listing "ends" after 100 items
    service, backfiller = await opened(forums, tmp_path)
    try:
        outcome = await backfiller.run(community(service, "gig"), days=30)
        # one page of 100 from each listing: submissions k = 1..100 and their replies;
        # both listings are complete only from the oldest reply (60 s after submission
        # k = 100): the comment listing says nothing about the minute before it
        assert (outcome.outcome, outcome.new_items, outcome.requests, outcome.steps) == (
            "partial",
            200,
            2,
            1,
        )
        assert outcome.covered_from == NOW - 100 * 2880 + 60
        assert service.engine is not None
        with Session(service.engine) as session:
            assert covered_spans(session, community_id="gig", since=NOW - 30 * DAY) == [
                (NOW - 100 * 2880 + 60, NOW)
            ]
    finally:
        await service.stop()


async def test_mastodon_backfill_follows_the_walk_back_over_several_polls(
    forums: Forums, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in range(150, 0, -1):  # oldest first, 48 minutes apart, the newest 48 minutes ago
        forums.mastodon.add_status("gigwork", created=NOW - k * 2880)
    monkeypatch.setattr(mastodon.Mastodon, "max_pages", 2)
    service, backfiller = await opened(forums, tmp_path)
    steps: list[BackfillProgress] = []
    try:
        outcome = await backfiller.run(community(service, "tag"), days=10, on_progress=steps.append)
        # step 1: the newest 80 (two pages back); steps 2 and 3: one page forward (only
        # the newest, seen: statuses are 48 minutes apart), then 40 and the last 30 back
        assert [s.new_items for s in steps] == [80, 120, 150]
        assert (outcome.outcome, outcome.new_items, outcome.requests, outcome.steps) == (
            "ok",
            150,
            6,
            3,
        )
        assert outcome.covered_from == NOW - 10 * DAY
        assert steps[-1].oldest == NOW - 150 * 2880
        assert posts(service, "tag") == (150, 150)
    finally:
        await service.stop()


async def test_hacker_news_keyword_backfill_fills_its_gap_then_vouches_for_the_whole_walk(
    forums: Forums, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stories = [
        forums.hn.add_story(by=f"s{k % 4}", title="gig pay", time=NOW - k * 4 * 3600)
        for k in range(60, 0, -1)  # 4 hours apart, the newest 4 hours ago
    ]
    monkeypatch.setattr(hackernews.HackerNews, "hits_per_page", 10)
    monkeypatch.setattr(hackernews.HackerNews, "max_pages_per_poll", 2)
    service, backfiller = await opened(forums, tmp_path)
    try:
        outcome = await backfiller.run(community(service, "hnq"), days=5)
        # 30 stories in 5 days, 20 a step: the newest 20, then the gap's last 10 (the gap
        # closes, but nothing newer than it was asked for), then one page above the head
        # that finds nothing new and vouches for the whole walk: from 5 days back
        assert (outcome.outcome, outcome.new_items, outcome.steps) == ("ok", 30, 3)
        assert outcome.covered_from == NOW - 5 * DAY
        assert posts(service, "hnq") == (30, 30)
        assert len(stories) == 60
    finally:
        await service.stop()


async def test_a_failed_backfill_keeps_its_steps_records_no_coverage_and_can_rerun(
    forums: Forums, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forums.discourse_history()
    monkeypatch.setattr(discourse.Discourse, "max_pages", 1)
    service, backfiller = await opened(forums, tmp_path)
    try:
        # the first step succeeds; every later request fails (after the client's retry)
        original = forums.server.inject

        def fail_after_first(progress: BackfillProgress) -> None:
            if progress.steps == 1:
                original(Fault("status", path_prefix="/forum/posts.json", status=503, count=99))

        failed = await backfiller.run(
            community(service, "forum"), days=10, on_progress=fail_after_first
        )
        assert (failed.outcome, failed.new_items, failed.steps, failed.covered_from) == (
            "http_5xx",
            50,
            1,
            None,
        )
        assert posts(service, "forum") == (50, 50)
        assert service.engine is not None
        with Session(service.engine) as session:
            assert covered_spans(session, community_id="forum", since=NOW - 30 * DAY) == []

        forums.server.clear()
        rerun = await backfiller.run(community(service, "forum"), days=10)
        assert (rerun.outcome, rerun.new_items, rerun.steps) == ("ok", 70, 4)
        assert posts(service, "forum") == (120, 120)
    finally:
        await service.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backfill_command(forums: Forums, tmp_path: Path) -> None:
    forums.discourse_history()
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{tmp_path / "store.db"}"
data_dir = "{tmp_path}"
pseudonym_key = "backfill-test-key-0123456789abcdef"

[http.rate_per_minute]
"127.0.0.1" = 100000

[[communities]]
id = "forum"
source = "discourse"
base_url = "{forums.server.base_url}/forum"
history_days = 10
"""
    )
    done = run_cli("backfill", "--config", str(path), "--days", "10", "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    outcome = json.loads(line)
    # 120 posts in 10 days, 20 pages of 50 a poll: one step, three pages
    assert (outcome["community"], outcome["outcome"], outcome["new_items"]) == ("forum", "ok", 120)
    assert outcome["requests"] == 3
    assert "Traceback" not in done.stderr

    text = run_cli("backfill", "--config", str(path), "--community", "forum")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("forum: ok, 0 new items (0 updated), 3 requests in 1 poll;")

    bad = run_cli("backfill", "--config", str(path), "--community", "nope", "--days", "0")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "--community: unknown community 'nope' (configured: forum)",
        "--days: must be between 1 and 3650",
    ]


class Fabricator:
    """Hand-made hostile server: /posts.json invents 50 older posts below any ``before=``,
    forever, dated ``seconds_apart`` apart going back from an hour ago."""

    def __init__(self, *, seconds_apart: int) -> None:
        self.seconds_apart = seconds_apart
        self.server = FakeForumServer(self.handle)

    def handle(self, request: Request) -> FakeResponse:
        top = int((request.query.get("before") or ["10000000"])[0])
        posts = [
            {
                "id": post_id,
                "topic_id": post_id,
                "post_number": 1,
                "post_type": 1,
                "created_at": iso(NOW - 3600 - (10_000_000 - post_id) * self.seconds_apart),
                "username": "bot",
                "raw": "invented",
            }
            for post_id in range(top - 1, top - 51, -1)
        ]
        return FakeResponse.json({"latest_posts": posts})


@pytest.mark.parametrize(
    ("seconds_apart", "stopped", "most"),
    [
        (0, "no_progress", 2 * 1000),  # every invented post at the same moment
        (1, "budget", 2 * 10_000 + 1000),  # going back a second a post: 2 days = 172,800
    ],
)
async def test_a_server_inventing_endless_older_pages_cannot_keep_a_backfill_going(
    seconds_apart: int, stopped: str, most: int, tmp_path: Path
) -> None:
    """472,000 invented posts were stored in 90 s; a backfill now stops at its horizon by
    timestamps and by a budget derived from it, and says why."""
    fabricator = Fabricator(seconds_apart=seconds_apart)
    with fabricator.server:
        base = fabricator.server.base_url
        settings = settings_from_mapping(
            service_config(tmp_path, [{"id": "fab", "source": "discourse", "base_url": base}])
        )
        service, backfiller = await open_backfill(settings, now=NOW)
        try:
            outcome = await backfiller.run(community(service, "fab"), days=2)
        finally:
            await service.stop()
    assert (outcome.outcome, outcome.stopped) == ("partial", stopped)
    assert 0 < outcome.new_items <= most
    assert outcome.covered_from is not None and outcome.covered_from > NOW - 2 * DAY
