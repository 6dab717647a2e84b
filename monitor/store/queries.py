"""Aggregate queries over a community's posts and authors in a time range.

Daily rollups (one UTC day) and rolling windows (1d/7d/28d ending now) count
the same things over different ranges; both go through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.analysis.text import NEGATIVE_THRESHOLD
from monitor.store.models import Author, Post

DAY_SECONDS = 86400


@dataclass(frozen=True, slots=True)
class PostAggregates:
    """Counts over the posts created in [start, end)."""

    posts: int
    threads_started: int
    participants: int
    """Distinct authors (deleted posts have none)."""
    sentiment_sum: float
    scored: int
    """Posts with a sentiment score."""
    negative: int

    @property
    def sentiment_mean(self) -> float | None:
        return self.sentiment_sum / self.scored if self.scored else None


def post_aggregates(session: Session, *, community_id: str, start: int, end: int) -> PostAggregates:
    """One index-range scan of ``posts`` (community, created_at)."""
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
        ).where(
            col(Post.community_id) == community_id,
            col(Post.created_at) >= start,
            col(Post.created_at) < end,
        )
    ).one()
    posts, threads, participants, sentiment_sum, scored_count, negative = row
    return PostAggregates(
        posts=int(posts),
        threads_started=int(threads),
        participants=int(participants),
        sentiment_sum=float(sentiment_sum),
        scored=int(scored_count),
        negative=int(negative),
    )


def new_authors(session: Session, *, community_id: str, start: int, end: int) -> int:
    """Authors whose first seen post falls in [start, end)."""
    count = session.exec(
        select(func.count()).where(
            Author.community_id == community_id,
            Author.first_seen >= start,
            Author.first_seen < end,
        )
    ).one()
    return int(count)


def _day_bucket(column: Any) -> Any:
    """UTC midnight (epoch seconds) of an epoch-seconds column, in SQL."""
    return column - column % DAY_SECONDS


def daily_post_aggregates(
    session: Session, *, community_id: str, start: int, end: int
) -> dict[int, PostAggregates]:
    """``post_aggregates`` of every UTC day in [start, end) that has posts, by day, in one
    index-range scan (``start`` and ``end`` are midnights)."""
    scored = col(Post.sentiment).is_not(None)
    day = _day_bucket(col(Post.created_at)).label("day")
    rows = session.execute(
        sa_select(
            day,
            func.count(),
            func.coalesce(func.sum(case((col(Post.kind) == "thread", 1), else_=0)), 0),
            func.count(func.distinct(Post.author_id)),
            func.coalesce(func.sum(Post.sentiment), 0.0),
            func.coalesce(func.sum(case((scored, 1), else_=0)), 0),
            func.coalesce(
                func.sum(case((col(Post.sentiment) <= NEGATIVE_THRESHOLD, 1), else_=0)), 0
            ),
        )
        .where(
            col(Post.community_id) == community_id,
            col(Post.created_at) >= start,
            col(Post.created_at) < end,
        )
        .group_by(day)
    )
    return {
        int(found_day): PostAggregates(
            posts=int(posts),
            threads_started=int(threads),
            participants=int(participants),
            sentiment_sum=float(sentiment_sum),
            scored=int(scored_count),
            negative=int(negative),
        )
        for found_day, posts, threads, participants, sentiment_sum, scored_count, negative in rows
    }


def daily_new_authors(
    session: Session, *, community_id: str, start: int, end: int
) -> dict[int, int]:
    """``new_authors`` of every UTC day in [start, end) that has some, by day."""
    day = _day_bucket(col(Author.first_seen)).label("day")
    rows = session.execute(
        sa_select(day, func.count())
        .where(
            col(Author.community_id) == community_id,
            col(Author.first_seen) >= start,
            col(Author.first_seen) < end,
        )
        .group_by(day)
    )
    return {int(found_day): int(count) for found_day, count in rows}
