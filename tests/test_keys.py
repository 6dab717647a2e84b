"""The pseudonym key's lifecycle against the store: recorded, checked, replaced on purpose."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from monitor.config import settings_from_mapping
from monitor.errors import KeyMismatch
from monitor.privacy import key_fingerprint
from monitor.service import Service
from monitor.store import db, keys
from tests.support import free_port, serve_argv

KEY_A = "key-a-0123456789abcdef0123456789abcdef"
KEY_B = "key-b-0123456789abcdef0123456789abcdef"


def write_config(tmp_path: Path, *, key: str | None, communities: str = "") -> Path:
    config = tmp_path / "config.toml"
    lines = [f'data_dir = "{tmp_path / "var"}"', f'database_url = "sqlite:///{tmp_path}/s.db"']
    if key is not None:
        lines.append(f'pseudonym_key = "{key}"')
    config.write_text("\n".join(lines) + "\n" + communities)
    return config


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env=env,
    )


def poll_once_ok(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    done = run("poll-once", *flags, "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    return done


def key_rows(database: Path) -> list[tuple[str, int, int]]:
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT fingerprint, first_used_at, counts_anew FROM pseudonym_keys ORDER BY id"
        ).fetchall()
    return [(str(f), int(t), int(c)) for f, t, c in rows]


def test_deleted_key_file_refuses_to_start_instead_of_counting_everyone_anew(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, key=None)
    first = run("poll-once", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    key_path = tmp_path / "var" / "pseudonym.key"
    assert key_path.exists()
    key_path.unlink()

    again = run("poll-once", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert str(key_path) in lines[0] and "missing" in lines[0]
    assert "--accept-new-key" in lines[0]
    assert not key_path.exists()  # no new key was made behind the operator's back

    # the operator gives up on the old key: a new one is made, and the break recorded
    settings = settings_from_mapping(
        {"data_dir": str(tmp_path / "var"), "database_url": f"sqlite:///{tmp_path / 's.db'}"}
    )
    service = Service(settings, clock=lambda: 1_700_000_000.0, accept_new_key=True)
    service.prepare()
    assert service.engine is not None
    service.engine.dispose()
    assert key_path.exists() and service.key == key_path.read_bytes().strip()
    assert service.authors_counted_anew_since == 1_700_000_000
    assert [anew for _, _, anew in key_rows(tmp_path / "s.db")] == [0, 1]


def test_another_key_is_refused_with_both_fingerprints_and_never_the_keys(
    tmp_path: Path,
) -> None:
    poll_once_ok(write_config(tmp_path, key=KEY_A))
    refused = run("poll-once", "--config", str(write_config(tmp_path, key=KEY_B)), cwd=tmp_path)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    line = lines[0]
    assert "does not match the one this store was written with" in line
    assert key_fingerprint(KEY_A.encode())[:12] in line
    assert key_fingerprint(KEY_B.encode())[:12] in line
    assert KEY_A not in line and KEY_B not in line
    assert "--accept-new-key" in line
    assert [row[0] for row in key_rows(tmp_path / "s.db")] == [key_fingerprint(KEY_A.encode())]


def prepared(tmp_path: Path, key: str, *, at: int, accept_new_key: bool = False) -> Service:
    """A service on the store in ``tmp_path`` whose start (``prepare``) happened at ``at``;
    the caller disposes of its engine."""
    service = Service(
        settings_from_mapping(
            {
                "data_dir": str(tmp_path / "var"),
                "database_url": f"sqlite:///{tmp_path / 's.db'}",
                "pseudonym_key": key,
            }
        ),
        clock=lambda: float(at),
        accept_new_key=accept_new_key,
    )
    try:
        service.prepare()
    finally:
        if service.engine is not None:
            service.engine.dispose()
    return service


def test_accepting_a_new_key_records_when_authors_are_counted_anew(tmp_path: Path) -> None:
    assert prepared(tmp_path, KEY_A, at=1_000).authors_counted_anew_since is None
    accepted = prepared(tmp_path, KEY_B, at=2_000, accept_new_key=True)
    assert accepted.authors_counted_anew_since == 2_000
    assert key_rows(tmp_path / "s.db") == [
        (key_fingerprint(KEY_A.encode()), 1_000, 0),
        (key_fingerprint(KEY_B.encode()), 2_000, 1),
    ]
    # the new key is now the store's key: no flag needed, and the old one is refused
    assert prepared(tmp_path, KEY_B, at=3_000).authors_counted_anew_since == 2_000
    with pytest.raises(KeyMismatch):
        prepared(tmp_path, KEY_A, at=4_000)
    # going back to the old key on purpose is one more new start of the counts
    assert prepared(tmp_path, KEY_A, at=5_000, accept_new_key=True).authors_counted_anew_since == (
        5_000
    )
    assert len(key_rows(tmp_path / "s.db")) == 3


def test_flag_with_the_same_key_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prepared(tmp_path, KEY_A, at=1_000)
    with caplog.at_level(logging.WARNING, logger="monitor.store.keys"):
        again = prepared(tmp_path, KEY_A, at=2_000, accept_new_key=True)
    assert again.authors_counted_anew_since is None
    assert "nothing to accept" in caplog.text
    assert key_rows(tmp_path / "s.db") == [(key_fingerprint(KEY_A.encode()), 1_000, 0)]


def test_store_keeps_a_keyed_fingerprint_not_the_key_nor_its_hash(tmp_path: Path) -> None:
    prepared(tmp_path, KEY_A, at=1_000)
    raw = (tmp_path / "s.db").read_bytes()
    assert KEY_A.encode() not in raw
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5):
        plain = digest(KEY_A.encode()).hexdigest()
        assert plain.encode() not in raw and plain[:12].encode() not in raw
    [(fingerprint, _, _)] = key_rows(tmp_path / "s.db")
    assert len(fingerprint) == 64 and fingerprint != hashlib.sha256(KEY_A.encode()).hexdigest()
    assert key_fingerprint(KEY_B.encode()) != fingerprint


def test_service_refuses_a_mismatch_before_anything_is_polled(tmp_path: Path) -> None:
    prepared(tmp_path, KEY_A, at=1_000)
    second = Service(
        settings_from_mapping(
            {
                "data_dir": str(tmp_path / "var"),
                "database_url": f"sqlite:///{tmp_path / 's.db'}",
                "pseudonym_key": KEY_B,
            }
        )
    )
    with pytest.raises(KeyMismatch) as caught:
        second.prepare()
    assert caught.value.stored == key_fingerprint(KEY_A.encode())
    assert caught.value.presented == key_fingerprint(KEY_B.encode())
    assert second.engine is None and not second.migrated and second.key is None


def test_empty_key_file_stops_the_service_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir(mode=0o700)
    key_path = tmp_path / "var" / "pseudonym.key"
    key_path.touch(mode=0o600)
    refused = run("poll-once", "--config", str(write_config(tmp_path, key=None)), cwd=tmp_path)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert str(key_path) in lines[0] and "empty" in lines[0]
    assert key_path.read_bytes() == b""


@pytest.mark.postgres
def test_key_check_on_postgres(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    try:
        db.upgrade(engine)
        a, b = key_fingerprint(KEY_A.encode()), key_fingerprint(KEY_B.encode())
        first = keys.check_key(engine, fingerprint=a, accept_new=False, now=100, key_origin="x")
        assert first == keys.KeyState(a, None)
        with pytest.raises(KeyMismatch):
            keys.check_key(engine, fingerprint=b, accept_new=False, now=200, key_origin="x")
        accepted = keys.check_key(engine, fingerprint=b, accept_new=True, now=300, key_origin="x")
        assert accepted == keys.KeyState(b, 300)
        assert keys.current_fingerprint(engine) == b
        again = keys.check_key(engine, fingerprint=b, accept_new=False, now=400, key_origin="x")
        assert again == keys.KeyState(b, 300)
    finally:
        engine.dispose()


def test_status_page_and_api_say_since_when_authors_are_counted_anew(tmp_path: Path) -> None:
    community = (
        '[[communities]]\nid = "gig"\nsource = "reddit"\nsubreddit = "gigwork"\n'
        'base_url = "http://127.0.0.1:1"\ninterval = "1h"\n'
    )
    prepared(tmp_path, KEY_A, at=1_600_000_000)
    prepared(tmp_path, KEY_B, at=1_700_000_000, accept_new_key=True)
    config = write_config(tmp_path, key=KEY_B, communities=community)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    process = subprocess.Popen(
        serve_argv(config, port),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.1)
        [view] = httpx.get(base + "/api/v1/communities").json()["communities"]
        assert view["id"] == "gig" and view["authors_counted_since"] == 1_700_000_000
        one = httpx.get(base + "/api/v1/communities/gig").json()
        assert one["authors_counted_since"] == 1_700_000_000
        assert "Authors counted anew since 2023-11-14 22:13 UTC" in httpx.get(base + "/").text
    finally:
        process.terminate()
        process.wait(timeout=15)
