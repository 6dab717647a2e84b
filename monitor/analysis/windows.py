"""Activity over rolling windows (1d, 7d, 28d ending now), by the posts' own timestamps.

Each window is a few aggregate queries over an index range of ``posts`` and
``threads``: the cost follows the window's size, never the whole history.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.store.models import Post, Thread
from monitor.store.queries import new_authors, post_aggregates

WINDOWS: dict[str, int] = {"1d": 86400, "7d": 7 * 86400, "28d": 28 * 86400}
DEFAULT_UNANSWERED_GRACE = 24 * 3600


@dataclass(frozen=True)
class KeywordActivity:
    posts: int
    sentiment_mean: float | None


@dataclass(frozen=True)
class WindowActivity:
    """Every activity gauge of one community for one window; None where undefined."""

    posts: int
    threads_started: int
    active_participants: int
    new_participants: int
    returning_participants_ratio: float | None
    thread_participants_avg: float | None
    thread_replies_avg: float | None
    unanswered_threads_ratio: float | None
    first_reply_median_seconds: float | None
    sentiment_mean: float | None
    sentiment_negative_ratio: float | None
    keywords: dict[str, KeywordActivity] = field(default_factory=dict)


def _authors_between(session: Session, community_id: str, start: int, end: int) -> set[int]:
    query = (
        select(Post.author_id)
        .where(
            Post.community_id == community_id,
            Post.created_at >= start,
            Post.created_at < end,
            col(Post.author_id).is_not(None),
        )
        .distinct()
    )
    return {author for author in session.exec(query) if author is not None}


def _thread_stats(
    session: Session, community_id: str, start: int, end: int, *, grace: int
) -> tuple[float | None, float | None, float | None]:
    """Replies per thread and median first-reply time of the threads started in the window,
    and the unanswered share of those that became older than ``grace`` in it."""
    rows = session.exec(
        select(Thread.created_at, Thread.reply_count, Thread.first_reply_at).where(
            Thread.community_id == community_id,
            col(Thread.created_at) >= start,
            col(Thread.created_at) < end,
        )
    ).all()
    replies_avg = sum(count for _, count, _ in rows) / len(rows) if rows else None
    # Unanswered is judged on the threads that passed the grace period during the window,
    # i.e. started in the window shifted back by the grace: a 1d window then always has
    # the previous day's threads to judge, not just one started exactly 24 h ago.
    settled = session.exec(
        select(Thread.reply_count).where(
            Thread.community_id == community_id,
            col(Thread.created_at) >= start - grace,
            col(Thread.created_at) < end - grace,
        )
    ).all()
    unanswered = sum(1 for count in settled if count == 0) / len(settled) if settled else None
    delays = [
        first - created for created, _, first in rows if first is not None and created is not None
    ]
    median = float(statistics.median(delays)) if delays else None
    return replies_avg, unanswered, median


def _thread_participants_avg(
    session: Session, community_id: str, start: int, end: int
) -> float | None:
    """Mean distinct authors (starter included) per thread started in the window."""
    started = (
        select(Thread.external_id)
        .where(
            Thread.community_id == community_id,
            col(Thread.created_at) >= start,
            col(Thread.created_at) < end,
        )
        .scalar_subquery()
    )
    per_thread = (
        select(Post.thread_external_id, func.count(func.distinct(Post.author_id)).label("n"))
        .where(Post.community_id == community_id, col(Post.thread_external_id).in_(started))
        .group_by(Post.thread_external_id)
        .subquery()
    )
    value = session.exec(select(func.avg(per_thread.c.n))).one()
    return None if value is None else float(value)


def _keywords(
    session: Session, community_id: str, start: int, end: int, groups: list[str]
) -> dict[str, KeywordActivity]:
    rows = session.exec(
        select(Post.keyword_groups, Post.sentiment).where(
            Post.community_id == community_id,
            Post.created_at >= start,
            Post.created_at < end,
            Post.keyword_groups != "",
        )
    ).all()
    found: dict[str, list[float | None]] = {group: [] for group in groups}
    for joined, score in rows:
        for group in joined.split(","):
            if group in found:
                found[group].append(score)
    result = {}
    for group, scores in found.items():
        known = [s for s in scores if s is not None]
        result[group] = KeywordActivity(len(scores), sum(known) / len(known) if known else None)
    return result


def window_activity(
    session: Session,
    *,
    community_id: str,
    seconds: int,
    now: int,
    keyword_groups: list[str],
    unanswered_grace: int = DEFAULT_UNANSWERED_GRACE,
) -> WindowActivity:
    """Activity in [now - seconds, now)."""
    start, end = now - seconds, now
    found = post_aggregates(session, community_id=community_id, start=start, end=end)
    previous = _authors_between(session, community_id, start - seconds, start)
    returning = None
    if previous:
        current = _authors_between(session, community_id, start, end)
        returning = len(previous & current) / len(previous)
    replies_avg, unanswered, first_reply = _thread_stats(
        session, community_id, start, end, grace=unanswered_grace
    )
    return WindowActivity(
        posts=found.posts,
        threads_started=found.threads_started,
        active_participants=found.participants,
        new_participants=new_authors(session, community_id=community_id, start=start, end=end),
        returning_participants_ratio=returning,
        thread_participants_avg=_thread_participants_avg(session, community_id, start, end),
        thread_replies_avg=replies_avg,
        unanswered_threads_ratio=unanswered,
        first_reply_median_seconds=first_reply,
        sentiment_mean=found.sentiment_mean,
        sentiment_negative_ratio=found.negative / found.scored if found.scored else None,
        keywords=_keywords(session, community_id, start, end, keyword_groups),
    )
