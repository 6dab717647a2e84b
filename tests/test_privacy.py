"""Pseudonym keys, pseudonyms and body retention."""

from __future__ import annotations

import hashlib
import logging
import stat
from pathlib import Path

import pytest
from sqlmodel import Session, select

from monitor.config import settings_from_mapping
from monitor.ingest import Ingestor
from monitor.privacy import load_or_create_key, pseudonym
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db
from monitor.store.models import Post
from monitor.store.retention import prune


def test_generated_key_is_private_and_announced_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="monitor.privacy"):
        first = load_or_create_key(configured=None, data_dir=tmp_path / "var")
        second = load_or_create_key(configured=None, data_dir=tmp_path / "var")
    assert first == second and len(first) == 64  # 32 random bytes, hex
    mode = stat.S_IMODE((tmp_path / "var" / "pseudonym.key").stat().st_mode)
    assert mode == 0o600
    announcements = [r for r in caplog.records if "generated" in r.getMessage()]
    assert len(announcements) == 1
    assert first.decode() not in caplog.text  # the key itself is never logged


def test_configured_key_wins(tmp_path: Path) -> None:
    assert load_or_create_key(configured="x" * 20, data_dir=tmp_path) == b"x" * 20
    assert not (tmp_path / "pseudonym.key").exists()


def test_pseudonym_is_keyed_and_scoped() -> None:
    alias = pseudonym(b"k1" * 8, source="reddit", community="gig", name="alice")
    assert alias != hashlib.sha256(b"alice").hexdigest()  # not a plain hash of the name
    assert alias != pseudonym(b"k2" * 8, source="reddit", community="gig", name="alice")
    assert alias != pseudonym(b"k1" * 8, source="reddit", community="rival", name="alice")
    assert alias == pseudonym(b"k1" * 8, source="reddit", community="gig", name="alice")


def test_kept_bodies_expire_after_retention(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {
            "store_bodies": True,
            "retention_days": 2,
            "communities": [{"id": "gig", "source": "reddit", "subreddit": "gig"}],
        }
    )
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade(engine)
    fetched = 1_700_000_000
    items = [
        Item(
            external_id=f"p{n}",
            kind="thread",
            thread_id=f"p{n}",
            created_at=fetched - n,
            author="alice",
            text=f"body {n}",
        )
        for n in range(3)
    ]
    batch = Batch(
        envelopes=[Envelope("gig", "reddit", fetched, i) for i in items],
        cursor={},
        validators={},
        requests=1,
        not_modified=False,
    )
    with db.session_scope(engine) as session:
        Ingestor(settings=settings, key=b"k" * 16).ingest(
            session,
            community=settings.communities[0],
            batch=batch,
            started_at=fetched,
            now=fetched,
        )
    expiry = fetched + 2 * 86400
    with db.session_scope(engine) as session:
        assert prune(session, now=expiry - 1) == (0, 0)
    with Session(engine) as session:
        assert {p.body for p in session.exec(select(Post))} == {"body 0", "body 1", "body 2"}
    with db.session_scope(engine) as session:
        assert prune(session, now=expiry) == (3, 0)
    with Session(engine) as session:
        posts = session.exec(select(Post)).all()
        assert [(p.body, p.body_expires_at) for p in posts] == [(None, None)] * 3
        assert len(posts) == 3  # the posts themselves stay: they are activity
    engine.dispose()
