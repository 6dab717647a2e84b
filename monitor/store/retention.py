"""Retention: kept post bodies expire, and old poll history is dropped."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import Session, col

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
