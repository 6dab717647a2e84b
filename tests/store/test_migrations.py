"""Migrations up and down, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, text
from sqlmodel import Session, SQLModel

from monitor.analysis.coverage import covered_spans, merge_spans
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


def test_sqlite_upgrade_compacts_poll_runs_into_spans(tmp_path: Path) -> None:
    _compacts_runs_and_back(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.postgres
def test_postgres_upgrade_compacts_poll_runs_into_spans(pg_url: str) -> None:
    _compacts_runs_and_back(pg_url)
