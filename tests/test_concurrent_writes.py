"""Two writers storing one community's first authors, threads and posts at once (two
replicas during a handover, or ``poll-once`` beside ``serve``), on PostgreSQL and SQLite:
the second one waits, finds the first one's rows, and stores nothing twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from monitor.ingest import Ingestor, IngestResult
from monitor.sources.base import Item
from monitor.store import db
from monitor.store.models import Author, Post, Thread
from tests.analysis import fixture as fx

NOW = fx.NOW
ITEMS = [
    Item(external_id="t1", kind="thread", thread_id="t1", created_at=NOW - 600, author="ann"),
    Item(
        external_id="r1",
        kind="reply",
        thread_id="t1",
        parent_id="t1",
        created_at=NOW - 500,
        author="bea",
    ),
    Item(
        external_id="r2",
        kind="reply",
        thread_id="t1",
        parent_id="t1",
        created_at=NOW - 400,
        author="ann",
    ),
    Item(external_id="t2", kind="thread", thread_id="t2", created_at=NOW - 300, author="cid"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = fx.make_store(tmp_path)
    else:
        made = fx.make_store(url=request.getfixturevalue("pg_url"))
    yield made
    made.dispose()


def ingest(session: Session) -> IngestResult:
    settings = fx.settings()
    return Ingestor(settings=settings, key=fx.KEY).ingest(
        session,
        community=fx.community(settings, "gig"),
        batch=fx.batch("gig", ITEMS, fetched_at=NOW, since=NOW - 86400),
        started_at=NOW - 5,
        now=NOW,
    )


BLOCKING_STATEMENTS = ("INSERT", "BEGIN IMMEDIATE")
"""Where the second writer waits for the first: its first insert (it read no rows before
it) waits on the first one's keys, or SQLite's ``BEGIN IMMEDIATE`` on the write lock."""


def race(engine: Engine, second: object) -> object:
    """The first writer has written (not yet committed) when the second one starts; the
    first commits once the second has reached the statement that waits for it (a fixed
    pause let a slow machine commit before the second writer had read anything). What
    the second writer returned or raised."""
    outcome: list[object] = []
    reached = threading.Event()

    def run() -> None:
        try:
            outcome.append(second())  # type: ignore[operator]
        except Exception as exc:
            outcome.append(exc)

    def watch(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if threading.current_thread() is writer and statement.lstrip().upper().startswith(
            BLOCKING_STATEMENTS
        ):
            reached.set()

    with db.session_scope(engine) as session:
        assert ingest(session).new_items == 4
        writer = threading.Thread(target=run)
        event.listen(engine, "before_cursor_execute", watch)
        try:
            writer.start()
            assert reached.wait(60), "the second writer never reached its first write"
        finally:
            event.remove(engine, "before_cursor_execute", watch)
        time.sleep(0.3)  # into the driver's call, where it waits for our commit
        assert writer.is_alive()  # it cannot finish before we commit
    writer.join(timeout=60)
    return outcome[0]


def counts(engine: Engine) -> tuple[int, int, int, list[int]]:
    with Session(engine) as session:
        replies = session.execute(select(Thread.reply_count).order_by(Thread.external_id))
        return (
            session.execute(select(func.count()).select_from(Post)).scalar_one(),
            session.execute(select(func.count()).select_from(Author)).scalar_one(),
            session.execute(select(func.count()).select_from(Thread)).scalar_one(),
            list(replies.scalars()),
        )


def test_the_second_writer_reads_the_first_ones_rows_and_adds_none(engine: Engine) -> None:
    second = race(engine, lambda: db.write_retrying_conflicts(engine, ingest))
    assert isinstance(second, IngestResult), second
    assert (second.new_items, second.updated_items) == (0, 0)
    assert counts(engine) == (4, 3, 2, [2, 0])  # 3 authors; t1 has 2 replies, not 4


def test_without_a_second_try_the_same_race_fails_on_a_unique_key(engine: Engine) -> None:
    """The race above is real: a single transaction loses it."""

    def once() -> IngestResult:
        with db.session_scope(engine) as session:
            return ingest(session)

    assert isinstance(race(engine, once), IntegrityError)
    assert counts(engine) == (4, 3, 2, [2, 0])
