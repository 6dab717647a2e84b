"""Coverage from the poll history: spans, an outage and its recovery, bounded polls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from monitor.analysis.coverage import coverage_ratio, covered_spans, merge_spans
from monitor.analysis.snapshot import compute_snapshot
from monitor.config import Settings
from monitor.ingest import Ingestor, record_failure
from monitor.sources.base import Item
from monitor.store import db
from monitor.store.models import PollRun, PollState
from tests.analysis import fixture as fx

H = 3600
DAY = 86400
T0 = fx.NOW  # the last successful poll before the outage
FIRST = T0 - 72 * H  # the first poll; it reaches back history_days (30 d)
SINCE = FIRST - 30 * DAY
Store = tuple[Engine, Settings, Ingestor]


def test_merge_spans() -> None:
    assert merge_spans([]) == []
    assert merge_spans([(5, 9), (0, 3), (3, 4), (8, 12), (20, 20), (30, 25)]) == [
        (0, 4),  # touching spans join
        (5, 12),  # overlapping spans join
    ]  # empty and inverted spans vanish


def test_coverage_ratio() -> None:
    spans = [(0, 10), (20, 30)]
    assert coverage_ratio(spans, start=0, end=40) == pytest.approx(20 / 40)
    assert coverage_ratio(spans, start=5, end=25) == pytest.approx((5 + 5) / 20)
    assert coverage_ratio(spans, start=10, end=20) == 0.0
    assert coverage_ratio(spans, start=0, end=10) == 1.0
    assert coverage_ratio([], start=0, end=10) == 0.0
    assert coverage_ratio(spans, start=10, end=10) == 0.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = fx.make_store(tmp_path)
    settings = fx.settings()
    yield engine, settings, Ingestor(settings=settings, key=fx.KEY)
    engine.dispose()


def poll_ok(
    store: Store,
    at: int,
    items: list[Item] | None = None,
    *,
    since: int = 0,
    complete: bool = True,
    covered_from: int | None = None,
) -> None:
    engine, settings, ingestor = store
    fx.ingest(
        engine,
        ingestor,
        settings,
        "gig",
        items or [],
        now=at,
        since=since,
        complete=complete,
        covered_from=covered_from,
    )


def poll_failed(store: Store, at: int) -> None:
    engine, settings, _ = store
    with db.session_scope(engine) as session:
        record_failure(
            session,
            community=fx.community(settings, "gig"),
            reason="http_5xx",
            message="503 Service Unavailable",
            started_at=at - 2,
            now=at,
            requests=1,
        )


def coverage(store: Store, now: int) -> dict[str, float]:
    engine, settings, _ = store
    with Session(engine) as session:
        snapshot = compute_snapshot(
            session, settings=settings, community=fx.community(settings, "gig"), now=now
        )
    return snapshot.coverage


def spans(store: Store) -> list[tuple[int, int]]:
    with Session(store[0]) as session:
        return covered_spans(session, community_id="gig", since=SINCE - DAY)


def healthy_until_t0(store: Store) -> None:
    poll_ok(store, FIRST, since=SINCE)
    for at in range(FIRST + H, T0 + 1, H):
        poll_ok(store, at)


def outage(store: Store, first_hour: int, last_hour: int) -> None:
    """Failed hourly polls at T0 + first_hour .. T0 + last_hour."""
    for at in range(T0 + first_hour * H, T0 + last_hour * H + 1, H):
        poll_failed(store, at)


def outage_item(external_id: str, created: int) -> Item:
    return Item(
        external_id=external_id,
        kind="thread",
        thread_id=external_id,
        created_at=created,
        author="a",
        title="Same here",
    )


def test_hourly_polls_cover_everything_since_the_first_poll_reached_back(store: Store) -> None:
    healthy_until_t0(store)
    assert spans(store) == [(SINCE, T0)]
    assert coverage(store, T0) == {"1d": 1.0, "7d": 1.0, "28d": 1.0}


def test_an_outage_lowers_coverage_until_the_recovery_poll_fills_it(
    store: Store,
) -> None:
    healthy_until_t0(store)
    # One failed poll is within 1.5 intervals (1.5 h) of the last success: not a gap yet.
    outage(store, 1, 1)
    assert coverage(store, T0 + H) == {"1d": 1.0, "7d": 1.0, "28d": 1.0}
    outage(store, 2, 2)
    # 2 h since the last success: 1d = 22/24
    assert coverage(store, T0 + 2 * H)["1d"] == pytest.approx(22 / 24)
    # 12 h into the outage: covered up to T0 only
    outage(store, 3, 12)
    assert coverage(store, T0 + 12 * H) == pytest.approx(
        {
            "1d": 12 / 24,  # [T0 - 12h, T0 + 12h): 12 of 24 h covered
            "7d": (168 - 12) / 168,
            "28d": (672 - 12) / 672,
        }
    )
    outage(store, 13, 47)
    assert spans(store) == [(SINCE, T0)]
    assert coverage(store, T0 + 47 * H) == pytest.approx(
        {"1d": 0.0, "7d": (168 - 47) / 168, "28d": (672 - 47) / 672}
    )
    with Session(store[0]) as session:
        state = session.get(PollState, "gig")
        assert state is not None
        assert state.last_success_at == T0
        assert state.consecutive_failures == 47

    # The recovery poll pages back to its cursor (complete): it covers the outage.
    recovered = T0 + 48 * H
    poll_ok(store, recovered, [outage_item("o1", T0 + 5 * H), outage_item("o2", T0 + 30 * H)])
    with Session(store[0]) as session:
        last = session.exec(select(PollRun).order_by(col(PollRun.id).desc())).first()
        assert last is not None
        assert (last.outcome, last.covered_from, last.finished_at) == ("ok", T0, recovered)
    assert spans(store) == [(SINCE, recovered)]
    assert coverage(store, recovered) == {"1d": 1.0, "7d": 1.0, "28d": 1.0}


def test_a_bounded_poll_leaves_the_gap_it_could_not_reach_uncovered(
    store: Store,
) -> None:
    healthy_until_t0(store)
    outage(store, 1, 47)
    # The recovery poll stopped early: it only reached items from T0 + 40h on.
    poll_ok(
        store,
        T0 + 48 * H,
        [outage_item("o1", T0 + 40 * H), outage_item("o2", T0 + 46 * H)],
        complete=False,
    )
    assert spans(store) == [(SINCE, T0), (T0 + 40 * H, T0 + 48 * H)]
    # 1d = [T0 + 24h, T0 + 48h): only [T0 + 40h, T0 + 48h) covered -> 8/24
    assert coverage(store, T0 + 48 * H)["1d"] == pytest.approx(8 / 24)
    # The next (complete) poll continues from the bounded poll's end; the gap stays.
    poll_ok(store, T0 + 49 * H)
    assert spans(store) == [(SINCE, T0), (T0 + 40 * H, T0 + 49 * H)]
    assert coverage(store, T0 + 49 * H) == pytest.approx(
        {
            "1d": 9 / 24,  # [T0 + 25h, T0 + 49h): [T0 + 40h, T0 + 49h) covered
            "7d": (168 - 40) / 168,  # the 40 h gap [T0, T0 + 40h) is inside 7d
            "28d": (672 - 40) / 672,
        }
    )


def test_a_bounded_poll_without_items_covers_only_its_own_run(
    store: Store,
) -> None:
    healthy_until_t0(store)
    outage(store, 1, 10)
    poll_ok(store, T0 + 11 * H, complete=False)  # started 0 s before it finished
    assert spans(store) == [(SINCE, T0)]  # a zero-length span adds nothing
    with Session(store[0]) as session:
        last = session.exec(select(PollRun).order_by(col(PollRun.id).desc())).first()
        assert last is not None and last.covered_from == T0 + 11 * H


def test_a_walk_back_that_ends_vouches_for_its_whole_span(store: Store) -> None:
    """A history walk spread over polls: each claims from its oldest item; the one that
    reaches the walk's floor time claims from there (``covered_from``)."""
    healthy_until_t0(store)
    outage(store, 1, 47)
    # the first poll after the outage fetched back to T0 + 30h, the next to T0 + 10h
    poll_ok(store, T0 + 48 * H, [outage_item("o1", T0 + 30 * H)], complete=False)
    poll_ok(store, T0 + 49 * H, [outage_item("o2", T0 + 10 * H)], complete=False)
    assert spans(store) == [(SINCE, T0), (T0 + 10 * H, T0 + 49 * H)]
    # the third reaches the walk's floor (T0): everything from there is fetched
    poll_ok(store, T0 + 50 * H, [outage_item("o3", T0 + 2 * H)], covered_from=T0)
    assert spans(store) == [(SINCE, T0 + 50 * H)]
