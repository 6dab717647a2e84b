"""Daily rollups of the fixture against hand-counted rows, and their incremental upkeep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from monitor.analysis.rollups import compute_day, day_of, refresh_days
from monitor.analysis.windows import WINDOWS, window_activity
from monitor.ingest import Ingestor
from monitor.store.models import Author, DailyRollup
from tests.analysis import fixture as fx
from tests.analysis.fixture import AWFUL, NEUTRAL_2, NEUTRAL_4, NOW, at, day_start

Row = tuple[int, int, int, int, int, float, int, int]
"""posts, threads_started, replies, active_participants, new_participants,
sentiment_sum, sentiment_count, negative_posts"""

# gig, day by day (days without posts have no row):
GIG_ROWS: dict[int, Row] = {
    -59: (2, 1, 1, 2, 2, 0.0, 2, 0),  # g1 a, g1r1 b: both first seen
    -50: (3, 1, 2, 3, 2, 0.6249 + 0.4767, 3, 0),  # g2 c, g2r1 a, g2r2 d: c, d new
    -40: (2, 1, 1, 2, 1, 0.7906, 2, 0),  # g3 d, g3r1 e: e new
    -39: (1, 0, 1, 1, 0, 0.0, 1, 0),  # g3r2 b
    -30: (2, 1, 1, 2, 0, 0.0, 2, 0),  # g4 e, g4r1 c
    -20: (2, 1, 1, 2, 0, -0.3612 - 0.4588, 2, 2),  # g5 a, g5r1 b: both negative
    -19: (1, 0, 1, 1, 1, 0.0, 1, 0),  # g5r2 f: f new
    -10: (1, 1, 0, 1, 0, -0.3818, 1, 1),  # g6 c
    -5: (2, 1, 1, 1, 0, -0.3412, 1, 1),  # g7 b, g7r1 deleted: counted, no author, no score
    -4: (1, 0, 1, 1, 0, 0.0, 1, 0),  # g7r2 a
    -2: (1, 1, 0, 1, 0, 0.0, 1, 0),  # g8 f
    -1: (2, 0, 2, 2, 0, 0.0, 2, 0),  # g8r1 b, g8r2 a
    0: (1, 1, 0, 1, 0, -0.4588, 1, 1),  # g9 b
}
SPOT_ROWS: dict[tuple[str, int], Row] = {
    ("rival", -2): (2, 1, 1, 2, 1, 0.4767, 2, 0),  # r6 g, r6r1 h: h new (g first seen -3)
    ("rival", -1): (2, 1, 1, 2, 1, 0.0, 2, 0),  # r7 h, r7r1 i: i new
    ("rival", 0): (2, 1, 1, 2, 0, 0.7906, 2, 0),  # r8 i, r6r2 a
    ("steady", -14): (2, 1, 1, 1, 0, 0.0, 1, 0),  # s7 deleted thread start, s7r1 c
    ("steady", 0): (2, 1, 1, 2, 1, 0.6249, 2, 0),  # s10 e (new), s8r3 b
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The fixture store for the read-only tests."""
    engine, _ = fx.build(Path(tmp_path_factory.mktemp("rollups")))
    yield engine
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    """A fixture store of its own, for tests that ingest more."""
    engine, _ = fx.build(tmp_path)
    yield engine
    engine.dispose()


def rows(engine: Engine, community: str) -> dict[int, DailyRollup]:
    with Session(engine) as session:
        found = session.exec(select(DailyRollup).where(DailyRollup.community_id == community))
        return {row.day: row for row in found}


def as_tuple(row: DailyRollup) -> tuple[object, ...]:
    return (
        row.posts,
        row.threads_started,
        row.replies,
        row.active_participants,
        row.new_participants,
        pytest.approx(row.sentiment_sum, abs=1e-9),
        row.sentiment_count,
        row.negative_posts,
    )


def expect(row: Row) -> tuple[object, ...]:
    return (*row[:5], pytest.approx(row[5], abs=1e-9), *row[6:])


def test_day_of_is_utc_midnight() -> None:
    assert day_of(NOW) == fx.TODAY == 1717200000  # 2024-06-01T00:00:00Z
    assert day_of(fx.TODAY) == fx.TODAY
    assert day_of(fx.TODAY - 1) == fx.TODAY - 86400


def test_gig_rows_match_the_hand_count(shared: Engine) -> None:
    found = rows(shared, "gig")
    assert sorted(found) == sorted(day_start(day) for day in GIG_ROWS)
    for day, row in GIG_ROWS.items():
        assert as_tuple(found[day_start(day)]) == expect(row), day
    assert sum(r.posts for r in found.values()) == len(fx.GIG) == 21


@pytest.mark.parametrize(("community", "day"), sorted(SPOT_ROWS))
def test_spot_rows_match_the_hand_count(shared: Engine, community: str, day: int) -> None:
    assert as_tuple(rows(shared, community)[day_start(day)]) == expect(SPOT_ROWS[(community, day)])


def test_incremental_rows_equal_a_full_recompute(shared: Engine) -> None:
    # The fixture was ingested in nine weekly polls with replies arriving after their
    # threads; recomputing every day from scratch must give the same rows.
    for community in fx.POSTS:
        incremental = rows(shared, community)
        with Session(shared) as session:
            for day, row in incremental.items():
                fresh = compute_day(session, community_id=community, day=day, now=NOW)
                assert as_tuple(fresh) == as_tuple(row), (community, day)


def test_only_the_touched_days_are_recomputed(store: Engine) -> None:
    settings = fx.settings()
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    before = rows(store, "gig")
    later = NOW + 3600
    g6_edited = replace(fx.item(replace(fx.spec("gig", "g6"), text=AWFUL)), edited_at=NOW + 1800)
    result = fx.ingest(
        store,
        ingestor,
        settings,
        "gig",
        [
            fx.item(fx.Spec("g9r1", "g9", at(0, "12:30"), "c", NEUTRAL_4)),  # new, day 0
            g6_edited,  # edit of a day -10 thread: "Pay cuts again" -> "This is awful"
            fx.item(fx.spec("gig", "g8")),  # g8 (day -2) resent unchanged: not touched
        ],
        now=later,
    )
    assert (result.new_items, result.updated_items) == (1, 1)
    assert result.touched_days == {day_start(0), day_start(-10)}
    after = rows(store, "gig")
    assert set(after) == set(before)
    for day, row in after.items():
        if day in result.touched_days:
            assert row.updated_at == later
        else:
            assert row.updated_at == before[day].updated_at
            assert as_tuple(row) == as_tuple(before[day])
    # day 0: g9 b (AWFUL), g9r1 c (0.0) at 12:30, after NOW
    assert as_tuple(after[day_start(0)]) == expect((2, 1, 1, 2, 0, -0.4588, 2, 1))
    # day -10: g6 re-scored -0.3818 -> -0.4588
    assert as_tuple(after[day_start(-10)]) == expect((1, 1, 0, 1, 0, -0.4588, 1, 1))


def test_late_older_post_moves_first_seen_and_fixes_both_days(store: Engine) -> None:
    settings = fx.settings()
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    later = NOW + 3600
    # f's first post was g5r2 (-19 10:00); a thread of f's from -30 10:00 arrives late
    result = fx.ingest(
        store,
        ingestor,
        settings,
        "gig",
        [fx.item(fx.Spec("g10", "g10", at(-30, "10:00"), "f", NEUTRAL_2))],
        now=later,
    )
    assert result.new_items == 1
    assert result.touched_days == {day_start(-30), day_start(-19)}
    found = rows(store, "gig")
    # day -30: g4 e, g4r1 c, + g10 f (new)
    assert as_tuple(found[day_start(-30)]) == expect((3, 2, 1, 3, 1, 0.0, 3, 0))
    assert found[day_start(-30)].updated_at == later
    # day -19: g5r2 f is no longer f's first post
    assert as_tuple(found[day_start(-19)]) == expect((1, 0, 1, 1, 0, 0.0, 1, 0))
    assert found[day_start(-19)].updated_at == later
    with Session(store) as session:
        first_seen = sorted(
            a.first_seen
            for a in session.exec(select(Author).where(Author.community_id == "gig")).all()
        )
        assert at(-30, "10:00") in first_seen and at(-19, "10:00") not in first_seen
        activity = window_activity(
            session, community_id="gig", seconds=WINDOWS["28d"], now=NOW, keyword_groups=[]
        )
    # f's first post is now before the 28d window: no new participant in 28d, and f
    # joins the previous 28d authors {a, b, c, d, e, f}, of whom a, b, c, f posted again
    assert activity.new_participants == 0
    assert activity.returning_participants_ratio == pytest.approx(4 / 6)


def test_refresh_of_a_day_without_posts_writes_an_empty_row(store: Engine) -> None:
    with Session(store) as session:
        assert refresh_days(session, community_id="gig", days=[day_start(-3)], now=NOW) == 1
        session.commit()
    assert as_tuple(rows(store, "gig")[day_start(-3)]) == expect((0, 0, 0, 0, 0, 0.0, 0, 0))


@pytest.mark.postgres
def test_rows_on_postgresql(pg_url: str) -> None:
    engine, _ = fx.build(url=pg_url)
    try:
        found = rows(engine, "gig")
        assert {day: as_tuple(row) for day, row in found.items()} == {
            day_start(day): expect(row) for day, row in GIG_ROWS.items()
        }
        for (community, day), row in SPOT_ROWS.items():
            assert as_tuple(rows(engine, community)[day_start(day)]) == expect(row)
    finally:
        engine.dispose()
