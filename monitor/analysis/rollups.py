"""Daily rollups per community, maintained incrementally.

After a poll only the UTC days its new or changed posts fall in are
recomputed, each from that day's posts alone (an index range scan), so the
work is proportional to the new posts, not to the history.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from monitor.store.models import DailyRollup
from monitor.store.queries import new_authors, post_aggregates

DAY = 86400


def day_of(timestamp: int) -> int:
    """UTC midnight (epoch seconds) of the day ``timestamp`` falls in."""
    return timestamp - timestamp % DAY


def refresh_days(session: Session, *, community_id: str, days: Iterable[int], now: int) -> int:
    """Recompute the rollup rows of ``days``; returns how many rows were written."""
    written = 0
    for day in sorted(set(days)):
        session.merge(compute_day(session, community_id=community_id, day=day, now=now))
        written += 1
    session.flush()
    return written


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
