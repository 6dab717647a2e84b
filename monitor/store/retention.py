"""Retention: kept post bodies expire, old poll history is dropped, and term counts settle
(``monitor.store.terms``) and expire after ``Settings.term_retention_days()``."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import Session, col

from monitor.config import Settings
from monitor.store import terms
from monitor.store.models import PollRun, Post

POLL_HISTORY_DAYS = 400
"""Poll runs older than this no longer matter: coverage reaches back at most 120 days."""


def prune(session: Session, *, now: int) -> tuple[int, int]:
    """Drop expired bodies and old poll runs; returns (bodies dropped, poll runs deleted)."""
    bodies = session.execute(
        update(Post)
        .where(col(Post.body_expires_at).is_not(None), col(Post.body_expires_at) <= now)
        .values(body=None, body_expires_at=None)
    )
    runs = session.execute(
        delete(PollRun).where(col(PollRun.finished_at) < now - POLL_HISTORY_DAYS * 86400)
    )
    return int(bodies.rowcount or 0), int(runs.rowcount or 0)  # type: ignore[attr-defined]


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
