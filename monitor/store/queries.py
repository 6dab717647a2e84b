"""Aggregate queries over a community's posts and authors in a time range.

Daily rollups (one UTC day) and rolling windows (1d/7d/28d ending now) count
the same things over different ranges; both go through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from monitor.analysis.text import NEGATIVE_THRESHOLD
from monitor.store.models import Author, Post


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
