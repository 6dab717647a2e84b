"""The store on disk: private modes, and no trace of a pruned body in the file."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED
from sqlalchemy import text

from monitor.config import Settings, settings_from_mapping
from monitor.ingest import Ingestor
from monitor.service import Service
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db

MARKER = "pay-cut-rant-4f1d2c"
"""A body's text, unusual enough that finding it in the file's bytes is no accident."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_store_is_private_and_so_are_its_log_files(tmp_path: Path) -> None:
    database = tmp_path / "new" / "store.db"
    engine = db.make_engine(f"sqlite:///{database}")
    try:
        db.upgrade(engine)
        with engine.connect() as connection:  # keeps the -wal and -shm files open
            connection.execute(text("SELECT count(*) FROM posts")).one()
            assert (mode(database.parent), mode(database)) == (0o700, 0o600)
            assert mode(Path(f"{database}-wal")) == 0o600
            assert mode(Path(f"{database}-shm")) == 0o600
    finally:
        engine.dispose()


def test_existing_open_store_is_named_not_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "store.db"
    with closing(sqlite3.connect(database)) as made_elsewhere:
        made_elsewhere.execute("CREATE TABLE earlier (id INTEGER)")
    database.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="monitor.filemodes"):
        db.make_engine(f"sqlite:///{database}").dispose()
    assert f"the SQLite store {database} is open to group or others (mode 0644)" in caplog.text
    assert f"chmod 600 {database}" in caplog.text
    assert mode(database) == 0o644  # the operator's file: named, not changed


def test_connections_turn_secure_delete_on_whatever_the_default() -> None:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("PRAGMA secure_delete=OFF")  # as a build that defaults to off
        db._sqlite_pragmas(connection, None)
        assert connection.execute("PRAGMA secure_delete").fetchone() == (1,)
    finally:
        connection.close()


def files_settings(folder: Path, **extra: Any) -> Settings:
    """A store and its files in ``folder``, with a fixed key."""
    return settings_from_mapping(
        {
            "data_dir": str(folder),
            "database_url": f"sqlite:///{folder / 'store.db'}",
            "pseudonym_key": "files-test-key-0123456789abcdef-0123",
            **extra,
        }
    )


def test_engine_connections_have_secure_delete_on(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA secure_delete")).one() == (1,)
    finally:
        engine.dispose()


def test_pruned_body_leaves_no_trace_in_the_files(tmp_path: Path) -> None:
    fetched = 1_700_000_000
    settings = files_settings(
        tmp_path,
        store_bodies=True,
        retention_days=1,
        communities=[{"id": "gig", "source": "reddit", "subreddit": "gig"}],
    )
    service = Service(settings, clock=lambda: float(fetched + 86400))
    service.prepare()
    assert service.engine is not None and service.key is not None
    items = [
        Item(
            external_id=f"p{n}",
            kind="thread",
            thread_id=f"p{n}",
            created_at=fetched - n,
            author=f"user{n}",
            text=f"{MARKER} number {n}: " + "the rate went down again " * 20,
        )
        for n in range(40)
    ]
    batch = Batch(
        envelopes=[Envelope("gig", "reddit", fetched, item) for item in items],
        cursor={},
        validators={},
        requests=1,
        not_modified=False,
    )
    with db.session_scope(service.engine) as session:
        Ingestor(settings=settings, key=service.key).ingest(
            session, community=settings.communities[0], batch=batch, started_at=fetched, now=fetched
        )
    files = [tmp_path / "store.db", tmp_path / "store.db-wal"]
    assert any(MARKER.encode() in f.read_bytes() for f in files if f.exists())  # kept, for now

    asyncio.run(service.prune())
    # read while the service still holds the store open: closing it would checkpoint and
    # delete the log, which a long-running service never does
    for found in files:
        if found.exists():
            assert MARKER.encode() not in found.read_bytes(), found.name
    with db.session_scope(service.engine) as session:
        bodies = session.execute(text("SELECT count(*) FROM posts WHERE body IS NOT NULL"))
        assert bodies.one() == (0,)
    service.engine.dispose()


def test_data_dir_open_to_others_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    settings = settings_from_mapping(
        {"data_dir": str(data_dir), "database_url": f"sqlite:///{tmp_path / 'store.db'}"}
    )
    service = Service(settings)
    with caplog.at_level(logging.WARNING, logger="monitor.filemodes"):
        service.prepare()
    assert service.engine is not None
    service.engine.dispose()
    assert f"data_dir {data_dir} is open to group or others (mode 0755)" in caplog.text
    assert f"chmod 700 {data_dir}" in caplog.text
    assert mode(data_dir) == 0o755
    assert mode(data_dir / "pseudonym.key") == 0o600


async def test_serve_prunes_every_hour_not_only_at_start(tmp_path: Path) -> None:
    settings = files_settings(tmp_path)
    service = Service(settings)
    await service.open()
    try:
        service.schedule()
        assert service.scheduler is not None
        job = service.scheduler.get_job("prune")
        assert job is not None, "expired bodies would stay until the next restart"
        assert job.func == service._scheduled_prune  # service.prune, quiet on shutdown
        assert job.trigger.interval == timedelta(hours=1)
    finally:
        await service.stop()


async def test_a_prune_running_when_the_service_stops_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first prune runs at start; a SIGTERM soon after (a busy machine makes that
    likely) stops the scheduler, which cancels it. That is a clean stop: no ERROR with a
    traceback from the scheduler."""
    settings = files_settings(tmp_path)
    service = Service(settings)
    await service.open()
    # another process's write transaction: the prune waits for it (busy_timeout)
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    submitted = asyncio.Event()
    try:
        service.schedule()
        assert service.scheduler is not None
        service.scheduler.add_listener(
            lambda event: event.job_id == "prune" and submitted.set(), EVENT_JOB_SUBMITTED
        )
        await asyncio.wait_for(submitted.wait(), 60)
        await asyncio.sleep(0.2)  # into its first statement, waiting for the lock
        caplog.set_level(logging.ERROR)
        await service.stop()
        await asyncio.sleep(0.5)  # the cancelled job's last step (and its log) runs here
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


NEW_STORE_ON_A_FULL_DISK = """
import resource, signal, sys
# every write to a file fails (EFBIG), as on a full disk; the signal would kill us instead
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from monitor.store import db
try:
    db.make_engine("sqlite:///" + sys.argv[1])
except Exception as exc:
    print(f"{exc.__class__.__name__}: {exc}")
    raise SystemExit(1)
"""


def test_store_that_cannot_be_created_leaves_no_empty_file(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    child = subprocess.run(
        [sys.executable, "-c", NEW_STORE_ON_A_FULL_DISK, str(database)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 1, child.stdout + child.stderr
    lines = child.stdout.strip().splitlines()
    assert len(lines) == 1, child.stdout
    assert lines[0].startswith(f"StoreError: cannot create the store {database}: ")
    assert list(tmp_path.iterdir()) == []  # the next start makes a new store, not "corrupt"
    db.make_engine(f"sqlite:///{database}").dispose()
    assert database.stat().st_size > 0
