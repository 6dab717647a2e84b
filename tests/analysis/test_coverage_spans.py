"""Coverage kept as merged spans: the same spans as merging every poll's, read in a few rows."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from monitor.analysis.coverage import add_span, covered_spans, merge_spans
from monitor.ingest import Ingestor, record_backfill
from monitor.sources.base import Item
from monitor.store import db
from monitor.store.changes import data_version
from monitor.store.models import Community, CoverageSpan, PollRun
from tests.analysis import fixture as fx

Span = tuple[int, int]
H = 3600


def random_spans(chance: random.Random, count: int) -> list[Span]:
    """Spans crowded into a short stretch: they overlap, touch, nest, repeat, and some
    are empty or inverted."""
    spans = []
    for _ in range(count):
        start = chance.randrange(0, 300)
        spans.append((start, start + chance.choice([-3, 0, 1, 2, 5, 10, 30, 80])))
    return spans


def stored(engine: Engine, community: str, since: int = -(10**9)) -> list[Span]:
    with Session(engine) as session:
        return covered_spans(session, community_id=community, since=since)


def spans_equal_merging_every_span(engine: Engine, seeds: range, *, count: int) -> None:
    """After each added span, the table holds what ``merge_spans`` of all of them gives."""
    for seed in seeds:
        chance = random.Random(seed)
        community = f"c{seed}"
        added: list[Span] = []
        with db.session_scope(engine) as session:
            session.add(Community(id=community, source="rss", created_at=0))
            session.flush()
            for span in random_spans(chance, count):
                add_span(session, community_id=community, start=span[0], end=span[1])
                added.append(span)
                found = covered_spans(session, community_id=community, since=-1)
                assert found == merge_spans(added), (seed, added)
        since = chance.randrange(0, 350)
        expected = [s for s in merge_spans(added) if s[1] >= since]
        assert stored(engine, community, since) == expected, (seed, since)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = fx.make_store(tmp_path)
    yield made
    made.dispose()


def test_incremental_spans_equal_merging_every_span(engine: Engine) -> None:
    spans_equal_merging_every_span(engine, range(60), count=40)


@pytest.mark.postgres
def test_incremental_spans_equal_merging_every_span_postgres(pg_url: str) -> None:
    engine = fx.make_store(url=pg_url)
    try:
        spans_equal_merging_every_span(engine, range(15), count=30)
    finally:
        engine.dispose()


def test_empty_and_inverted_spans_add_nothing(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        session.add(Community(id="c", source="rss", created_at=0))
    with db.session_scope(engine) as session:
        assert add_span(session, community_id="c", start=5, end=5) is None
        assert add_span(session, community_id="c", start=9, end=2) is None
    assert stored(engine, "c") == []


def test_months_of_polls_are_one_span_that_outlives_the_poll_history(tmp_path: Path) -> None:
    """Coverage is read from the merged spans, never from the poll runs: after 200 daily
    polls it is one row, and it stays when the runs are pruned away."""
    engine = fx.make_store(tmp_path)
    settings = fx.settings()
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    first = fx.NOW - 200 * fx.DAY
    polls = range(first + fx.DAY, fx.NOW + 1, fx.DAY)
    fx.ingest(engine, ingestor, settings, "gig", [], now=first, since=first - 30 * fx.DAY)
    for at in polls:
        fx.ingest(engine, ingestor, settings, "gig", [], now=at)
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(PollRun)).scalar() == 1 + len(polls)
        assert session.execute(select(func.count()).select_from(CoverageSpan)).scalar() == 1
    assert stored(engine, "gig") == [(first - 30 * fx.DAY, fx.NOW)]
    with db.session_scope(engine) as session:
        session.execute(text("DELETE FROM poll_runs"))
    assert stored(engine, "gig") == [(first - 30 * fx.DAY, fx.NOW)]
    engine.dispose()


def test_the_data_version_moves_when_what_analysis_reads_changes(tmp_path: Path) -> None:
    """Polls and backfills move the community's data version when they change posts or
    coverage as analysis sees it, and leave it when they only confirm what it assumed."""
    engine = fx.make_store(tmp_path)
    settings = fx.settings()  # hourly polls: the grace interval is 1.5 h
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    first = fx.NOW - 10 * H

    def poll(at: int, items: list[Item] | None = None, **kwargs: Any) -> int:
        fx.ingest(engine, ingestor, settings, "gig", items or [], now=at, **kwargs)
        with Session(engine) as session:
            return data_version(session, community_id="gig")

    def backfill(start: int, end: int) -> int:
        with db.session_scope(engine) as session:
            record_backfill(
                session,
                community_id="gig",
                covered_from=start,
                covered_until=end,
                new_items=0,
                requests=1,
            )
            return data_version(session, community_id="gig")

    def post(external_id: str, created: int, text: str = "Same here") -> Item:
        return Item(
            external_id=external_id,
            kind="thread",
            thread_id=external_id,
            created_at=created,
            author="a",
            text=text,
        )

    version = poll(first, since=first - fx.DAY)
    assert version > 0  # the first coverage
    assert poll(first + H) == version  # nothing new, within the grace interval
    version, previous = poll(first + 2 * H, [post("p1", first + 90 * 60)]), version
    assert version > previous  # a new post
    version, previous = poll(first + 3 * H, [post("p1", first + 90 * 60, "Edited")]), version
    assert version > previous  # an edited post
    # nothing new, but two hours after the last success: the gap analysis saw is closed
    version, previous = poll(first + 5 * H), version
    assert version > previous
    # a bounded poll that reached back only to its own item leaves a gap: a new span
    version, previous = poll(first + 8 * H, [post("p2", first + 7 * H)], complete=False), version
    assert version > previous
    with Session(engine) as session:
        assert covered_spans(session, community_id="gig", since=0) == [
            (first - fx.DAY, first + 5 * H),
            (first + 7 * H, first + 8 * H),
        ]
    assert backfill(first - 5 * H, first) == version  # already covered
    version, previous = backfill(first + 5 * H, first + 7 * H), version  # closes the gap
    assert version > previous
    engine.dispose()


def two_writers_take_turns(url: str) -> None:
    """A poll and a backfill of one community in two processes at once: the second waits
    for the first to commit, then merges with what it wrote."""
    first, second = db.make_engine(url), db.make_engine(url)
    try:
        with db.session_scope(first) as session:
            session.add(Community(id="c", source="rss", created_at=0))
        errors: list[BaseException] = []

        def backfill() -> None:
            try:
                with db.session_scope(second) as session:
                    add_span(session, community_id="c", start=5, end=20)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        with db.session_scope(first) as session:
            add_span(session, community_id="c", start=0, end=10)
            other = threading.Thread(target=backfill)
            other.start()
            other.join(timeout=1.0)
            assert other.is_alive(), "the second writer did not wait for the first"
        other.join(timeout=15)
        assert errors == []
        assert stored(first, "c") == [(0, 20)]
    finally:
        first.dispose()
        second.dispose()


def test_concurrent_writers_of_one_community_keep_its_spans_merged(tmp_path: Path) -> None:
    fx.make_store(tmp_path).dispose()
    two_writers_take_turns(f"sqlite:///{tmp_path / 'forum.db'}")


@pytest.mark.postgres
def test_concurrent_writers_of_one_community_keep_its_spans_merged_postgres(
    pg_url: str,
) -> None:
    fx.make_store(url=pg_url).dispose()
    two_writers_take_turns(pg_url)
