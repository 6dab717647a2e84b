"""Which pseudonym key the store was written with, by fingerprint.

Pseudonyms made with another key do not match the stored ones, so every author
would count as new. ``check_key`` refuses such a key unless the operator accepts
it, and then records when authors began to be counted anew.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from monitor.errors import KeyMismatch
from monitor.store.db import session_scope
from monitor.store.models import Author, PseudonymKey

log = logging.getLogger(__name__)

SHOWN_FINGERPRINT_CHARS = 12
"""Enough of a fingerprint to tell keys apart in a message."""


@dataclass(frozen=True)
class KeyState:
    """The key in use: its fingerprint, and since when authors are counted anew (if ever)."""

    fingerprint: str
    counted_anew_since: int | None


def short(fingerprint: str) -> str:
    return fingerprint[:SHOWN_FINGERPRINT_CHARS]


def current_fingerprint(engine: Engine) -> str | None:
    """The fingerprint of the key the store was last written with; None for a new store."""
    with Session(engine) as session:
        newest = _newest(session)
        return newest.fingerprint if newest else None


def check_key(
    engine: Engine, *, fingerprint: str, accept_new: bool, now: int, key_origin: str
) -> KeyState:
    """Record the key on a store's first start; refuse another key unless ``accept_new``,
    which records it as a new start of the author counts. ``key_origin`` says where the
    key came from (a file to restore, or the config field), for the message."""
    with session_scope(engine) as session:
        newest = _newest(session)
        if newest is None:
            session.add(PseudonymKey(fingerprint=fingerprint, first_used_at=now))
            if _has_authors(session):
                log.info(
                    "recorded the pseudonym key's fingerprint %s; the authors already stored "
                    "were written before fingerprints were kept and cannot be checked",
                    short(fingerprint),
                )
        elif newest.fingerprint != fingerprint:
            if not accept_new:
                raise KeyMismatch(
                    "pseudonym key does not match the one this store was written with "
                    f"(fingerprint {short(newest.fingerprint)}, this key "
                    f"{short(fingerprint)}): restore {key_origin}, or start once with "
                    "--accept-new-key to count every author anew from now",
                    stored=newest.fingerprint,
                    presented=fingerprint,
                )
            session.add(PseudonymKey(fingerprint=fingerprint, first_used_at=now, counts_anew=True))
            log.warning(
                "accepted a new pseudonym key (fingerprint %s, was %s): every author is "
                "counted anew from now; participant counts before and after do not link",
                short(fingerprint),
                short(newest.fingerprint),
            )
        elif accept_new:
            log.warning(
                "--accept-new-key: the key is the one this store knows, nothing to accept; "
                "remove the flag, or a lost key would go unnoticed next time"
            )
        session.flush()
        return KeyState(fingerprint, _counted_anew_since(session))


def _newest(session: Session) -> PseudonymKey | None:
    return session.exec(select(PseudonymKey).order_by(col(PseudonymKey.id).desc())).first()


def _counted_anew_since(session: Session) -> int | None:
    latest = session.exec(
        select(PseudonymKey)
        .where(col(PseudonymKey.counts_anew).is_(True))
        .order_by(col(PseudonymKey.id).desc())
    ).first()
    return latest.first_used_at if latest else None


def _has_authors(session: Session) -> bool:
    return session.exec(select(Author.id).limit(1)).first() is not None
