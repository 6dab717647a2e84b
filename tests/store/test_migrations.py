"""Migrations up and down, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from monitor.store import db

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
