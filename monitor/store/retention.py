"""Retention: kept post bodies expire, old poll history is dropped, and term counts settle
(``monitor.store.terms``) and expire after ``Settings.term_retention_days()``.

Poll runs are the poll history only: coverage is kept apart, merged, in
``coverage_spans`` (which is never pruned: a few rows per community, and what
``export-openmetrics`` needs however far back it is asked to go). So the runs
are kept for ``POLL_HISTORY_DAYS``, and pruning them changes nothing that
analysis reads.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlmodel import Session, col

from monitor.config import Settings
from monitor.store import terms
from monitor.store.models import Community, PollRun, Post

POLL_HISTORY_DAYS = 7
"""Poll runs that started longer ago than this are dropped. A week is enough to look
into a recent problem by hand (Prometheus keeps the poll counters for longer); at one
run per community every 5 minutes, 30 days of runs were half of a SQLite store of
1,000 communities' year, which the integrity check at every start reads whole."""


def expire_bodies(session: Session, *, now: int) -> int:
    """Drop the kept bodies whose retention ended; returns how many."""
    found = session.execute(
        update(Post)
        .where(col(Post.body_expires_at).is_not(None), col(Post.body_expires_at) <= now)
        .values(body=None, body_expires_at=None)
    )
    return int(found.rowcount or 0)  # type: ignore[attr-defined]


def prune_poll_history(session: Session, *, community_id: str, now: int) -> int:
    """Drop one community's poll runs older than ``POLL_HISTORY_DAYS`` (an index range)."""
    found = session.execute(
        delete(PollRun).where(
            col(PollRun.community_id) == community_id,
            col(PollRun.started_at) < now - POLL_HISTORY_DAYS * 86400,
        )
    )
    return int(found.rowcount or 0)  # type: ignore[attr-defined]


def stored_communities(session: Session) -> list[str]:
    """Every community the store holds, configured or not any more."""
    return list(session.execute(select(col(Community.id)).order_by(col(Community.id))).scalars())


def prune(session: Session, *, now: int) -> tuple[int, int]:
    """Drop expired bodies and old poll runs; returns (bodies dropped, poll runs deleted)."""
    bodies = expire_bodies(session, now=now)
    runs = sum(
        prune_poll_history(session, community_id=community_id, now=now)
        for community_id in stored_communities(session)
    )
    return bodies, runs


def settle_terms(session: Session, *, settings: Settings, now: int) -> tuple[int, int]:
    """Fold closed days' term uses into their counts and drop expired counts; returns
    (days folded, count rows deleted)."""
    rules = settings.terms
    folded = terms.settle(
        session,
        now=now,
        k=rules.min_authors,
        pool_days=rules.author_pool_days,
    )
    expired = terms.purge(session, now=now, retention_days=settings.term_retention_days())
    return folded, expired
