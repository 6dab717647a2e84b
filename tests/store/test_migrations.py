"""Migrations up and down, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

from monitor.store import db
from tests.support import REPO_ROOT


def _migration_lock() -> int:
    """The advisory lock key alembic/env.py takes (env.py runs only under alembic)."""
    source = (REPO_ROOT / "alembic" / "env.py").read_text()
    line = next(line for line in source.splitlines() if line.startswith("MIGRATION_LOCK ="))
    return int(line.split("=")[1].split("#")[0].strip(), 0)


MIGRATION_LOCK = _migration_lock()

TABLES = {
    "communities",
    "authors",
    "threads",
    "posts",
    "poll_state",
    "poll_runs",
    "daily_rollups",
    "pseudonym_keys",
}


def _up_down_up(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        names = set(inspect(engine).get_table_names())
        assert TABLES <= names
        assert db.current_revision(engine) is not None
        db.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _schema_matches_models(url: str) -> None:
    """Autogenerate finds nothing to do: the migrations describe exactly the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_sqlite_up_and_down(tmp_path: Path) -> None:
    _up_down_up(f"sqlite:///{tmp_path / 'store.db'}")


def test_sqlite_models_match_migrations(tmp_path: Path) -> None:
    _schema_matches_models(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_postgres_up_and_down(pg_url: str) -> None:
    _up_down_up(pg_url)


@pytest.mark.postgres
def test_postgres_models_match_migrations(pg_url: str) -> None:
    _schema_matches_models(pg_url)


def test_unreachable_postgres_names_host_without_password() -> None:
    from monitor.errors import DatabaseUnreachable

    with pytest.raises(DatabaseUnreachable) as caught:
        db.make_engine("postgresql://watcher:s3cret-pw@127.0.0.1:1/forum")
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cret-pw" not in message


def _db_upgrade(url: str, cwd: Path) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "db", "upgrade"],
        cwd=cwd,
        env={**environ, "FORUM_MONITOR_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_replicas_migrating_together_take_turns(pg_url: str, tmp_path: Path) -> None:
    """Replicas started together on an empty database raced through the same migration:
    one died on a UniqueViolation of alembic_version (a 99-line traceback)."""
    runs = [_db_upgrade(pg_url, tmp_path) for _ in range(4)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], errors
    engine = db.make_engine(pg_url)
    try:
        assert (
            db.current_revision(engine)
            == ScriptDirectory.from_config(db.alembic_config(engine)).get_current_head()
        )
    finally:
        engine.dispose()


def test_a_migration_waits_for_the_one_under_way(pg_url: str, tmp_path: Path) -> None:
    """While another process holds the migration lock, ``db upgrade`` waits and creates
    nothing; once the lock is free it migrates."""
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        run = _db_upgrade(pg_url, tmp_path)
        with pytest.raises(subprocess.TimeoutExpired):
            run.wait(timeout=3)  # still waiting for the lock the test holds
        tables = holder.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version'"
        ).fetchone()
        assert tables == (0,)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
