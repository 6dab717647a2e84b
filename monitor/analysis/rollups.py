"""Daily rollups per community, maintained incrementally.

After a poll only the UTC days its new or changed posts fall in are
recomputed, each from that day's posts alone (an index range scan), so the
work is proportional to the new posts, not to the history.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_, case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.analysis.text import NEGATIVE_THRESHOLD
from monitor.store.models import Author, DailyRollup, Post

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
    in_day = and_(
        col(Post.community_id) == community_id,
        col(Post.created_at) >= day,
        col(Post.created_at) < day + DAY,
    )
    scored = col(Post.sentiment).is_not(None)
    row = session.execute(
        sa_select(
            func.count(),
            func.coalesce(func.sum(case((col(Post.kind) == "thread", 1), else_=0)), 0),
            func.count(func.distinct(Post.author_id)),
            func.coalesce(func.sum(Post.sentiment), 0.0),
            func.coalesce(func.sum(case((scored, 1), else_=0)), 0),
            func.coalesce(
                func.sum(case((col(Post.sentiment) <= NEGATIVE_THRESHOLD, 1), else_=0)), 0
            ),
        ).where(in_day)
    ).one()
    posts, threads, participants, sentiment_sum, sentiment_count, negative = row
    new_participants = session.exec(
        select(func.count()).where(
            Author.community_id == community_id,
            Author.first_seen >= day,
            Author.first_seen < day + DAY,
        )
    ).one()
    return DailyRollup(
        community_id=community_id,
        day=day,
        posts=int(posts),
        threads_started=int(threads),
        replies=int(posts) - int(threads),
        active_participants=int(participants),
        new_participants=int(new_participants),
        sentiment_sum=float(sentiment_sum),
        sentiment_count=int(sentiment_count),
        negative_posts=int(negative),
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
