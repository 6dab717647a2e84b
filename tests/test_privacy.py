"""Pseudonym keys, pseudonyms and body retention."""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from monitor.config import settings_from_mapping
from monitor.errors import PseudonymKeyError
from monitor.ingest import Ingestor
from monitor.privacy import (
    create_key_file,
    hmac_sha256_hex,
    key_fingerprint,
    load_or_create_key,
    namespace_pseudonym,
    pseudonym,
)
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
    assert load_or_create_key(configured="x" * 32, data_dir=tmp_path) == b"x" * 32
    assert not (tmp_path / "pseudonym.key").exists()


def test_generated_key_leaves_only_itself_in_a_private_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    load_or_create_key(configured=None, data_dir=data_dir)
    assert [p.name for p in data_dir.iterdir()] == ["pseudonym.key"]  # no temporary file
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_a_new_key_never_replaces_one_that_exists(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"k" * 64 + b"\n")
    path.chmod(0o600)
    # as if another process had written its key between our look and our write
    assert create_key_file(path) == b"k" * 64
    assert path.read_bytes() == b"k" * 64 + b"\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pseudonym.key"]


@pytest.mark.parametrize("content", [b"", b"\n", b"  \t\n\n"])
def test_empty_key_file_is_refused_not_used(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(PseudonymKeyError) as caught:
        load_or_create_key(configured=None, data_dir=tmp_path)
    assert str(path) in str(caught.value) and "empty" in str(caught.value)
    assert path.read_bytes() == content  # left for the operator to look at


@pytest.mark.parametrize("content", [b"x", b"x\n", b"0123456789abcdef0123456789abcde\n"])
def test_short_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(PseudonymKeyError) as caught:
        load_or_create_key(configured=None, data_dir=tmp_path)
    found = len(content.strip())
    assert f"{path} holds {found} bytes, fewer than 32" in str(caught.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"k" * 64 + b"\n")
    path.chmod(mode)
    with pytest.raises(PseudonymKeyError) as caught:
        load_or_create_key(configured=None, data_dir=tmp_path)
    message = str(caught.value)
    assert f"mode {mode:04o}" in message and f"chmod 600 {path}" in message
    assert "\n" not in message


DISK_FULL_CHILD = """
import resource, signal, sys
from pathlib import Path
# every write to a file fails (EFBIG), as on a full disk; the signal would kill us instead
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from monitor.privacy import load_or_create_key
try:
    load_or_create_key(configured=None, data_dir=Path(sys.argv[1]))
except Exception as exc:
    print(f"{exc.__class__.__name__}: {exc}")
    raise SystemExit(1)
"""


def test_key_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    child = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 1, child.stdout + child.stderr
    lines = child.stdout.strip().splitlines()
    assert len(lines) == 1, child.stdout
    assert lines[0].startswith(f"PseudonymKeyError: cannot write a new pseudonym key to {data_dir}")
    assert "nothing was written" in lines[0]
    assert list(data_dir.iterdir()) == []  # neither an empty key nor a temporary file
    # and the next start, with room on the disk, makes a whole key
    assert len(load_or_create_key(configured=None, data_dir=data_dir)) == 64


def test_fingerprint_tells_keys_apart_without_being_the_key_or_its_hash() -> None:
    key = b"0123456789abcdef" * 4
    fingerprint = key_fingerprint(key)
    assert fingerprint == key_fingerprint(bytes(key))
    assert fingerprint != key_fingerprint(key[:-1] + b"0")
    assert len(fingerprint) == 64 and key.decode() not in fingerprint
    assert fingerprint != hashlib.sha256(key).hexdigest()
    assert fingerprint not in {
        pseudonym(key, source=s, community=c, name=n)
        for s, c, n in [("", "", ""), ("reddit", "gig", "alice")]
    }


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


@pytest.mark.parametrize("length", [1, 16, 32, 63, 64, 65, 200])
def test_pseudonyms_are_hmac_sha256_for_every_key_length(length: int) -> None:
    """The padded key states are reused across names (one per key); every pseudonym is still
    the standard HMAC-SHA256 of its message, keys shorter and longer than a block alike."""
    key = bytes((7 * n + length) % 256 for n in range(length))
    other = bytes(reversed(key)) + b"x"
    for name in ("alice", "bob", "", "ünïcode", "x" * 300):
        message = "\x1f".join(("reddit", "gig", name)).encode("utf-8")
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        assert pseudonym(key, source="reddit", community="gig", name=name) == expected
        assert pseudonym(other, source="reddit", community="gig", name=name) != expected
        namespaced = "\x1f".join(("namespace", "reddit", name)).encode("utf-8")
        assert namespace_pseudonym(key, namespace="reddit", name=name) == (
            hmac.new(key, namespaced, hashlib.sha256).hexdigest()
        )
    assert hmac_sha256_hex(key, b"") == hmac.new(key, b"", hashlib.sha256).hexdigest()
