"""Which communities' analysed data changed: one version number per community.

Every write that changes what analysis reads of a community (new or edited posts,
with their threads, authors and rollups; its coverage) moves the community's
``data_version`` on in the same transaction. Analysis keeps the version each
snapshot was computed from and recomputes a community when the store holds a newer
one, whichever process wrote it (``serve``'s polls, a ``backfill`` beside it).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select, update
from sqlmodel import Session, col

from monitor.store.models import Community

COMMUNITIES = cast(Table, Community.__table__)  # type: ignore[attr-defined]
"""The table itself: an UPDATE of it is plain SQL, without the ORM's bulk-update pass over
the session (about 1 ms a statement; nothing reads a version from a loaded object)."""


def mark_changed(session: Session, *, community_id: str) -> None:
    session.execute(
        update(COMMUNITIES)
        .where(COMMUNITIES.c.id == community_id)
        .values(data_version=COMMUNITIES.c.data_version + 1)
    )


def lock_community(session: Session, *, community_id: str) -> None:
    """Make concurrent writers of one community's coverage take turns until commit.

    A row lock on PostgreSQL; on SQLite any write takes the store's write lock.
    """
    session.execute(
        update(COMMUNITIES)
        .where(COMMUNITIES.c.id == community_id)
        .values(data_version=COMMUNITIES.c.data_version)
    )


def data_versions(session: Session) -> dict[str, int]:
    """Every community's data version."""
    rows = session.execute(select(col(Community.id), col(Community.data_version)))
    return {community_id: int(version) for community_id, version in rows}


def data_version(session: Session, *, community_id: str) -> int:
    found = session.execute(
        select(col(Community.data_version)).where(col(Community.id) == community_id)
    ).scalar()
    return int(found) if found is not None else 0
