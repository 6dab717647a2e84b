"""``forum-monitor backfill`` of GitHub Discussions: a walk by latest activity, spread over
several polls, whose steps do not bring ever older posts (the first may hold the oldest).

Against the fake GitHub on 127.0.0.1; every post is made by the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import backfill
from monitor.config import Settings, settings_from_mapping
from monitor.fakeforum.github import FakeGitHub
from monitor.fakeforum.server import FakeForumServer
from monitor.sources.github import GitHub
from tests.support import open_backfill, served, service_config, stored_posts

NOW = 1_750_000_000
DAY = 86400
HOUR = 3600


@pytest.fixture
def fake() -> Iterator[tuple[FakeGitHub, FakeForumServer]]:
    made = FakeGitHub()
    made.add_repository("acme/widgets")
    with served(made) as server:
        yield made, server


def widgets_settings(server: FakeForumServer, tmp_path: Path) -> Settings:
    community = {"id": "widgets", "source": "github", "repository": "acme/widgets"}
    return settings_from_mapping(
        service_config(tmp_path, [{**community, "base_url": server.base_url}])
    )


def twelve_discussions(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> str:
    """Twelve discussions, the n-th (from 0) opened n + 1 days ago, read 3 a page and one
    page a poll (4 steps for the 12). Discussion 8, 9 days old, has a comment an hour
    old, whose id is returned: a walk's first step holds it, and with it the oldest post
    the walk will report until its last steps."""
    monkeypatch.setattr(GitHub, "discussions_page", 3)
    monkeypatch.setattr(GitHub, "max_requests", 1)
    made = [github.add_discussion("acme/widgets", created=NOW - (n + 1) * DAY) for n in range(12)]
    return github.add_comment(made[8], created=NOW - HOUR)


async def test_a_backfill_follows_the_activity_walk_to_its_end_and_claims_only_that(
    fake: tuple[FakeGitHub, FakeForumServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github, server = fake
    late = twelve_discussions(github, monkeypatch)
    settings = widgets_settings(server, tmp_path)
    service, backfiller = await open_backfill(settings, now=NOW)
    try:
        outcome = await backfiller.run(settings.communities[0], days=10)
        # steps of a page of 3 by activity: (8, 0, 1), (2, 3, 4), (5, 6, 7), then (9, and
        # 10, 11 days old, ends the range); a last step from the newest (8, and 0, a day
        # old, ends it) closes the walk. The second step brings nothing older than the
        # first's 9-day-old thread, yet the walk is not stuck: it is not by creation time.
        # Reported: the comment and the 10 discussions opened within the 10 days
        assert (outcome.outcome, outcome.stopped, outcome.steps) == ("ok", "reached", 5)
        assert outcome.new_items == 11
        assert outcome.covered_from == NOW - 10 * DAY
        assert stored_posts(service.engine, "widgets") == (11, 11)
        assert late in github.thread_posts("acme/widgets")
    finally:
        await service.stop()


async def test_a_backfill_stopped_mid_walk_claims_only_what_its_walk_vouches_for(
    fake: tuple[FakeGitHub, FakeForumServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github, server = fake
    twelve_discussions(github, monkeypatch)
    monkeypatch.setattr(backfill, "MAX_POSTS_PER_DAY", 0)  # stop after the first step
    settings = widgets_settings(server, tmp_path)
    service, backfiller = await open_backfill(settings, now=NOW)
    try:
        outcome = await backfiller.run(settings.communities[0], days=10)
        # one step: 8 (with its comment), 0 and 1. Its oldest post is 8's thread, 9 days
        # old, but discussions 2 to 7 are unread: coverage only from just above the
        # activity of 1, the least active discussion read (opened 2 days ago)
        assert (outcome.outcome, outcome.stopped, outcome.steps) == ("partial", "budget", 1)
        assert outcome.new_items == 4
        assert outcome.covered_from == NOW - 2 * DAY + 1
    finally:
        await service.stop()
