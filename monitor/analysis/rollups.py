"""Daily rollups per community, maintained incrementally.

After a poll only the UTC days its new or changed posts fall in are
recomputed, from those days' posts alone (an index range scan), so the
work is proportional to the new posts, not to the history. Consecutive days
are computed together, one grouped query per run of days (a first poll touches
a month at once), and the rows are written in one statement each for the days
that had a row and those that had none: this runs in the poll's write
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.store.bulk import bulk_insert, bulk_update
from monitor.store.models import DailyRollup
from monitor.store.queries import (
    PostAggregates,
    daily_new_authors,
    daily_post_aggregates,
    new_authors,
    post_aggregates,
)

DAY = 86400
ROLLUPS = cast(Table, DailyRollup.__table__)  # type: ignore[attr-defined]
_CHUNK = 500


def day_of(timestamp: int) -> int:
    """UTC midnight (epoch seconds) of the day ``timestamp`` falls in."""
    return timestamp - timestamp % DAY


def refresh_days(session: Session, *, community_id: str, days: Iterable[int], now: int) -> int:
    """Recompute the rollup rows of ``days`` (UTC midnights); returns how many rows were
    written (one per day, a day without posts included)."""
    wanted = sorted(set(days))
    if not wanted:
        return 0
    rows: dict[int, dict[str, Any]] = {}
    for first, last in _runs(wanted):
        posts = daily_post_aggregates(
            session, community_id=community_id, start=first, end=last + DAY
        )
        authors = daily_new_authors(session, community_id=community_id, start=first, end=last + DAY)
        for day in range(first, last + DAY, DAY):
            rows[day] = _row(community_id, day, now, posts.get(day), authors.get(day, 0))
    stored: set[int] = set()
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        query = sa_select(ROLLUPS.c.day).where(
            ROLLUPS.c.community_id == community_id, ROLLUPS.c.day.in_(part)
        )
        stored.update(int(day) for day in session.execute(query).scalars())
    bulk_update(
        session,
        ROLLUPS,
        [rows[day] for day in wanted if day in stored],
        key=("community_id", "day"),
    )
    bulk_insert(session, ROLLUPS, [rows[day] for day in wanted if day not in stored])
    return len(wanted)


def _runs(days: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive days in sorted ``days``."""
    first = previous = days[0]
    for day in days[1:]:
        if day != previous + DAY:
            yield first, previous
            first = day
        previous = day
    yield first, previous


def _row(
    community_id: str, day: int, now: int, found: PostAggregates | None, new_participants: int
) -> dict[str, Any]:
    posts = found.posts if found else 0
    threads = found.threads_started if found else 0
    return {
        "community_id": community_id,
        "day": day,
        "posts": posts,
        "threads_started": threads,
        "replies": posts - threads,
        "active_participants": found.participants if found else 0,
        "new_participants": new_participants,
        "sentiment_sum": found.sentiment_sum if found else 0.0,
        "sentiment_count": found.scored if found else 0,
        "negative_posts": found.negative if found else 0,
        "updated_at": now,
    }


def compute_day(session: Session, *, community_id: str, day: int, now: int) -> DailyRollup:
    found = post_aggregates(session, community_id=community_id, start=day, end=day + DAY)
    return DailyRollup(
        community_id=community_id,
        day=day,
        posts=found.posts,
        threads_started=found.threads_started,
        replies=found.posts - found.threads_started,
        active_participants=found.participants,
        new_participants=new_authors(session, community_id=community_id, start=day, end=day + DAY),
        sentiment_sum=found.sentiment_sum,
        sentiment_count=found.scored,
        negative_posts=found.negative,
        updated_at=now,
    )


def daily_rows(
    session: Session, *, community_id: str, since_day: int, until_day: int
) -> list[DailyRollup]:
    """Rollup rows for days in [since_day, until_day], oldest first (days without posts absent)."""
    query = (
        select(DailyRollup)
        .where(
            DailyRollup.community_id == community_id,
            DailyRollup.day >= since_day,
            DailyRollup.day <= until_day,
        )
        .order_by(col(DailyRollup.day))
    )
    return list(session.exec(query))
