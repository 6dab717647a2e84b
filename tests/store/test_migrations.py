"""Migrations up and down, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlmodel import Session, SQLModel

from monitor.analysis.coverage import covered_spans, merge_spans
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
    "term_counts",
    "term_days",
    "coverage_spans",
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


def _random_runs(chance: random.Random, communities: list[str]) -> list[dict[str, object]]:
    """Poll runs as the older versions wrote them: successes, failures, backfills,
    overlapping, touching, empty and inverted spans, in no particular order."""
    runs: list[dict[str, object]] = []
    for community in communities:
        for _ in range(chance.randrange(0, 60)):
            start = chance.randrange(0, 400)
            finished = start + chance.choice([0, 1, 3, 10, 40, -5])
            outcome = chance.choice(["ok", "ok", "not_modified", "backfill", "http_5xx", "timeout"])
            covered_from = None if outcome in ("http_5xx", "timeout") else start
            if outcome == "ok" and chance.random() < 0.1:
                covered_from = None  # written before coverage was recorded (0002)
            runs.append(
                {
                    "community_id": community,
                    "started_at": finished,
                    "finished_at": finished,
                    "outcome": outcome,
                    "new_items": 0,
                    "requests": 1,
                    "covered_from": covered_from,
                }
            )
    chance.shuffle(runs)
    return runs


def _spans_of_runs(connection: Connection, community: str) -> list[tuple[int, int]]:
    """Coverage as versions up to 0004 computed it: every successful run's span, merged."""
    rows = connection.execute(
        text(
            "SELECT covered_from, finished_at FROM poll_runs WHERE community_id = :c "
            "AND outcome IN ('ok', 'not_modified', 'backfill') AND covered_from IS NOT NULL"
        ),
        {"c": community},
    ).all()
    return merge_spans([(int(a), int(b)) for a, b in rows])


def _compacts_runs_and_back(url: str) -> None:
    """Upgrading a store with poll history gives the spans the runs gave; downgrading
    after the runs were pruned gives them back to the older version."""
    engine = db.make_engine(url)
    chance = random.Random(7)
    communities = [f"c{n}" for n in range(12)]
    try:
        db.upgrade(engine, "0004")
        with engine.begin() as connection:
            for community in communities:
                connection.execute(
                    text("INSERT INTO communities (id, source, created_at) VALUES (:c, 'rss', 0)"),
                    {"c": community},
                )
            connection.execute(
                text(
                    "INSERT INTO poll_runs (community_id, started_at, finished_at, outcome, "
                    "new_items, requests, covered_from) VALUES (:community_id, :started_at, "
                    ":finished_at, :outcome, :new_items, :requests, :covered_from)"
                ),
                _random_runs(chance, communities),
            )
        with engine.connect() as connection:
            before = {c: _spans_of_runs(connection, c) for c in communities}
        assert sum(len(s) for s in before.values()) > 40, "overlaps and gaps, not one span each"

        db.upgrade(engine)
        with Session(engine) as session:
            after = {c: covered_spans(session, community_id=c, since=-1) for c in communities}
        assert after == before

        with engine.begin() as connection:  # pruned poll history: only the spans keep it
            connection.execute(text("DELETE FROM poll_runs"))
        db.downgrade(engine, "0004")
        with engine.connect() as connection:
            assert {c: _spans_of_runs(connection, c) for c in communities} == before
        db.upgrade(engine)
        db.downgrade(engine, "0004")  # again: no duplicate runs pile up
        with engine.connect() as connection:
            runs = connection.execute(text("SELECT count(*) FROM poll_runs")).scalar()
        assert runs == sum(len(s) for s in before.values())
    finally:
        engine.dispose()


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


def test_sqlite_upgrade_compacts_poll_runs_into_spans(tmp_path: Path) -> None:
    _compacts_runs_and_back(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_postgres_upgrade_compacts_poll_runs_into_spans(pg_url: str) -> None:
    _compacts_runs_and_back(pg_url)


def test_a_migration_waits_for_the_one_under_way(pg_url: str, tmp_path: Path) -> None:
    """While another process holds the migration lock, ``db upgrade`` waits and creates
    nothing; once the lock is free it migrates."""
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        run = _db_upgrade(pg_url, tmp_path)
        # it waits on the lock the test holds: PostgreSQL shows its request not granted
        # (a fixed pause proved nothing when a busy machine had not yet started it)
        deadline = time.monotonic() + 60
        waiting = (
            "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = pg_locks.database "
            "WHERE d.datname = current_database() AND locktype = 'advisory' AND NOT granted "
            "AND classid = %s AND objid = %s"
        )
        key = (MIGRATION_LOCK >> 32, MIGRATION_LOCK & 0xFFFFFFFF)
        while holder.execute(waiting, key).fetchone() != (1,):
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "db upgrade never asked for the migration lock"
            time.sleep(0.1)
        time.sleep(0.5)
        assert run.poll() is None  # still waiting for the lock the test holds
        tables = holder.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version'"
        ).fetchone()
        assert tables == (0,)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err


def _namespace_column_up_and_down(url: str) -> None:
    """0007 adds ``authors.namespace_pseudonym`` (nullable, indexed with the community);
    going back to 0004 drops both and keeps the rows."""
    from sqlalchemy import text

    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        columns = {c["name"]: c for c in inspect(engine).get_columns("authors")}
        assert columns["namespace_pseudonym"]["nullable"] is True
        indexes = {i["name"] for i in inspect(engine).get_indexes("authors")}
        assert "ix_authors_community_namespace_pseudonym" in indexes
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO communities (id, source, created_at) VALUES ('a', 'reddit', 1)")
            )
            connection.execute(
                text(
                    "INSERT INTO authors (community_id, pseudonym, namespace_pseudonym, "
                    "first_seen, last_seen) VALUES ('a', 'p', 'n', 1, 2)"
                )
            )
        db.downgrade(engine, "0004")
        inspector = inspect(engine)
        assert "namespace_pseudonym" not in {c["name"] for c in inspector.get_columns("authors")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pseudonym FROM authors")).all() == [("p",)]
        db.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT namespace_pseudonym FROM authors")).all()
        assert rows == [(None,)]
    finally:
        engine.dispose()


def test_sqlite_namespace_pseudonyms_up_and_down(tmp_path: Path) -> None:
    _namespace_column_up_and_down(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_postgres_namespace_pseudonyms_up_and_down(pg_url: str) -> None:
    _namespace_column_up_and_down(pg_url)


def _term_days_sql(engine: object) -> str | None:
    with db.session_scope(engine) as session:  # type: ignore[arg-type]
        if session.get_bind().dialect.name != "sqlite":
            return None
        found = session.connection().exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'term_days'"
        )
        return str(found.scalar_one())


STAGED_KEYS = ["community", "day", "term", "pending", "authors", "entries"]


def _term_days_rebuilt_keeps_rows(url: str) -> None:
    """0009 rebuilds ``term_days`` without a rowid on SQLite (nothing on PostgreSQL); its
    staged rows survive the upgrade and the way back to 0008."""
    engine = db.make_engine(url)
    staged = [("a", 86400, "pay rate", 3, "1,2,3", 3), ("a", 86400, "queue", 1, "2", 1)]
    select = "SELECT community_id, day, term, pending, authors, author_entries FROM term_days"
    try:
        db.upgrade(engine, "0008")
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO communities (id, source, created_at) VALUES ('a', 'reddit', 1)")
            )
            for row in staged:
                connection.execute(
                    text(
                        "INSERT INTO term_days VALUES "
                        "(:community, :day, :term, :pending, :authors, :entries)"
                    ),
                    dict(zip(STAGED_KEYS, row, strict=True)),
                )
        rowid_sql = _term_days_sql(engine)
        assert rowid_sql is None or "WITHOUT ROWID" not in rowid_sql
        db.upgrade(engine)
        sql = _term_days_sql(engine)
        assert sql is None or sql.rstrip().endswith("WITHOUT ROWID")
        with engine.connect() as connection:
            assert sorted(map(tuple, connection.execute(text(select)).all())) == staged
        db.downgrade(engine, "0008")
        back = _term_days_sql(engine)
        assert back is None or "WITHOUT ROWID" not in back
        with engine.connect() as connection:
            assert sorted(map(tuple, connection.execute(text(select)).all())) == staged
    finally:
        engine.dispose()


def test_sqlite_term_days_without_rowid_up_and_down(tmp_path: Path) -> None:
    _term_days_rebuilt_keeps_rows(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_postgres_term_days_up_and_down(pg_url: str) -> None:
    _term_days_rebuilt_keeps_rows(pg_url)
