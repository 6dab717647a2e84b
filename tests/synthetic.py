"""Snapshots of many communities without a store: for tests of what reading costs at scale.

The daily series are made up (a weekly rhythm, a deterministic wobble, a halving for every
third template); everything derived from them (change ratios, change points, decline
scores) comes from the real analysis, ``signal_trends``. Communities beyond the templates
are clones under their own ids.
"""

from __future__ import annotations

import dataclasses
import random
from functools import cache
from typing import Any

from monitor.analysis.rollups import DAY, day_of
from monitor.analysis.snapshot import (
    SERIES_DAYS,
    CommunitySnapshot,
    DayActivity,
    Snapshots,
    signal_trends,
)
from monitor.analysis.windows import KeywordActivity, WindowActivity
from monitor.config import Settings, settings_from_mapping
from monitor.store import db

NOW = 1_795_000_000
TEMPLATES = 6
SOURCES = ("reddit", "discourse", "hackernews", "rss", "mastodon")
KEYWORDS = {"pay": ["pay cut"], "onboarding": ["unpaid onboarding"]}


def community_entry(community_id: str, source: str) -> dict[str, Any]:
    """A valid ``[[communities]]`` entry of ``source`` (nothing here is polled)."""
    kind: dict[str, dict[str, Any]] = {
        "reddit": {"subreddit": "gigwork"},
        "discourse": {"base_url": "https://forum.example.org"},
        "hackernews": {},
        "rss": {"url": "https://blog.example.org/feed.xml"},
        "mastodon": {"base_url": "https://social.example.org", "hashtag": "gigwork"},
    }
    return {"id": community_id, "source": source, **kind[source]}


def community_ids(count: int) -> list[str]:
    return [f"community-{n:04d}" for n in range(count)]


def source_of(number: int) -> str:
    return SOURCES[number % TEMPLATES % len(SOURCES)]


def settings_for(count: int, *, ids: list[str] | None = None) -> Settings:
    """``count`` communities, their ids ``community_ids(count)`` unless ``ids`` says."""
    return settings_from_mapping(
        {
            "keywords": KEYWORDS,
            "communities": [
                community_entry(cid, source_of(n))
                for n, cid in enumerate(ids or community_ids(count))
            ],
        }
    )


def _window(days: list[DayActivity], chance: random.Random) -> WindowActivity:
    posts = sum(d.posts for d in days)
    threads = sum(d.threads_started for d in days)
    return WindowActivity(
        posts=posts,
        threads_started=threads,
        active_participants=max(d.active_participants for d in days) * 2,
        new_participants=sum(d.new_participants for d in days),
        returning_participants_ratio=chance.uniform(0.2, 0.8),
        thread_participants_avg=chance.uniform(1, 6),
        thread_replies_avg=(posts - threads) / threads if threads else None,
        unanswered_threads_ratio=chance.uniform(0, 0.4),
        first_reply_median_seconds=chance.uniform(600, 30000),
        sentiment_mean=chance.uniform(-0.3, 0.4),
        sentiment_negative_ratio=chance.uniform(0.1, 0.5),
        keywords={
            "onboarding": KeywordActivity(posts=posts // 40, sentiment_mean=None),
            "pay": KeywordActivity(posts=posts // 13, sentiment_mean=chance.uniform(-0.5, 0)),
        },
    )


@cache
def template(number: int) -> CommunitySnapshot:
    """Template ``number`` (0 <= number < TEMPLATES), analysed; every third one halves
    three weeks before NOW."""
    chance = random.Random(number)
    today = day_of(NOW)
    rate = 40 * (1 + number)
    daily = []
    for index in range(SERIES_DAYS):
        day = today - (SERIES_DAYS - index) * DAY
        level = rate * (0.5 if number % 3 == 0 and day >= today - 21 * DAY else 1.0)
        posts = int(
            level * (0.75 if (day // DAY + 3) % 7 >= 5 else 1.1) * chance.uniform(0.85, 1.15)
        )
        sentiment = chance.uniform(-0.2, 0.3)
        daily.append(
            DayActivity(
                day=day,
                posts=posts,
                threads_started=posts // 8,
                replies=posts - posts // 8,
                active_participants=posts // 3,
                new_participants=posts // 20,
                sentiment_sum=sentiment * posts,
                sentiment_count=posts,
                negative_posts=posts // 4,
                coverage=1.0,
            )
        )
    changes, shifts, declines = signal_trends(daily, today=today)
    return CommunitySnapshot(
        community=f"template-{number}",
        source=source_of(number),
        computed_at=NOW,
        windows={
            "1d": _window(daily[-1:], chance),
            "7d": _window(daily[-7:], chance),
            "28d": _window(daily[-28:], chance),
        },
        coverage={"1d": 1.0, "7d": 1.0, "28d": 1.0},
        last_post_at=NOW - 120,
        last_success_at=NOW - 60,
        last_error=None,
        daily=daily,
        trends=changes,
        changepoints=shifts,
        declines=declines,
    )


def snapshot_of(number: int, community_id: str) -> CommunitySnapshot:
    return dataclasses.replace(template(number % TEMPLATES), community=community_id)


def filled_snapshots(settings: Settings, *, analysed: int | None = None) -> Snapshots:
    """Snapshots of the first ``analysed`` (default: every) community of ``settings``; a
    store is never read."""
    snapshots = Snapshots(settings=settings, engine=db.make_engine("sqlite://"))
    for number, community in enumerate(settings.communities[:analysed]):
        snapshots.install(snapshot_of(number, community.id))
    return snapshots
