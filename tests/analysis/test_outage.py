"""An outage is never a decline: trends are withheld while coverage is low, then recover.

A steady community posts 12 times a day (one post every 2 hours) for 40 days and is
polled regularly. Then polls fail for two days while posting goes on at the same
rate; the recovery poll fetches the two days it missed. Polls run every 3 hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.analysis.rollups import refresh_days
from monitor.analysis.snapshot import CommunitySnapshot, compute_snapshot
from monitor.config import Settings, settings_from_mapping
from monitor.ingest import Ingestor, record_failure
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db

DAY, HOUR = 86400, 3600
START = 1_717_200_000 - 1_717_200_000 % DAY  # a UTC midnight
OUTAGE = START + 40 * DAY  # polls fail from here for two days
RECOVERY = OUTAGE + 2 * DAY


def posts_between(start: int, end: int) -> list[Item]:
    """One thread every 2 hours, by one of 6 authors in turn."""
    return [
        Item(
            external_id=f"p{t}",
            kind="thread",
            thread_id=f"p{t}",
            created_at=t,
            author=f"member{(t // (2 * HOUR)) % 6}",
            text="Another ordinary day here.",
        )
        for t in range(start + (-start) % (2 * HOUR), end, 2 * HOUR)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Engine, Settings]]:
    settings = settings_from_mapping(
        {
            "communities": [
                {
                    "id": "steady",
                    "source": "reddit",
                    "subreddit": "steady",
                    "interval": "3h",
                    "history_days": 60,
                }
            ],
        }
    )
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade(engine)
    yield engine, settings
    engine.dispose()


def poll(engine: Engine, settings: Settings, *, since: int, at: int) -> None:
    """A successful poll at ``at`` that fetched everything created since ``since``."""
    ingestor = Ingestor(settings=settings, key=b"outage-test-key-0123")
    batch = Batch(
        envelopes=[Envelope("steady", "reddit", at, i) for i in posts_between(since, at)],
        cursor={"at": at},
        validators={},
        requests=1,
        not_modified=False,
        since=at - 60 * DAY,
    )
    with db.session_scope(engine) as session:
        result = ingestor.ingest(
            session, community=settings.communities[0], batch=batch, started_at=at, now=at
        )
        refresh_days(session, community_id="steady", days=result.touched_days, now=at)


def fail(engine: Engine, settings: Settings, *, at: int) -> None:
    with db.session_scope(engine) as session:
        record_failure(
            session,
            community=settings.communities[0],
            reason="http_5xx",
            message="503",
            started_at=at,
            now=at,
            requests=1,
        )


def snapshot(engine: Engine, settings: Settings, now: int) -> CommunitySnapshot:
    with db.session_scope(engine) as session:
        return compute_snapshot(
            session, settings=settings, community=settings.communities[0], now=now
        )


def ratios(snap: CommunitySnapshot) -> dict[tuple[str, str], float]:
    return {(t.signal, t.window): t.ratio for t in snap.trends}


def test_two_day_outage_withholds_trends_and_recovers(store: tuple[Engine, Settings]) -> None:
    engine, settings = store
    poll(engine, settings, since=START, at=START)  # the first poll covers 60 days back
    for hour in range(3, 40 * 24 + 1, 3):
        poll(engine, settings, since=START + (hour - 3) * HOUR, at=START + hour * HOUR)
    before = snapshot(engine, settings, OUTAGE)
    # 12 posts every day before and after: every count ratio is exactly 1
    assert ratios(before)[("posts", "7d")] == pytest.approx(1.0)
    assert ratios(before)[("posts", "1d")] == pytest.approx(1.0)
    assert before.coverage["1d"] == pytest.approx(1.0)

    for hour in range(3, 48, 3):
        fail(engine, settings, at=OUTAGE + hour * HOUR)
    during = snapshot(engine, settings, RECOVERY - 1)
    # nothing was fetched for two days: no trend may read that as a decline
    assert ("posts", "7d") not in ratios(during)
    assert ("posts", "1d") not in ratios(during)
    assert ("active_participants", "7d") not in ratios(during)
    assert all(point.shift_ratio >= 0.85 for point in during.changepoints)
    # the last success was at OUTAGE, two days (far more than 1.5 intervals) ago
    assert during.coverage["1d"] == pytest.approx(0.0)
    # 7d: the 5 days before the outage of the 7 days ending one second before recovery
    assert during.coverage["7d"] == pytest.approx((5 * DAY + 1) / (7 * DAY))

    poll(engine, settings, since=OUTAGE, at=RECOVERY)  # fetches the two missed days
    after = snapshot(engine, settings, RECOVERY + HOUR)
    assert after.coverage["1d"] == pytest.approx(1.0)
    assert after.coverage["7d"] == pytest.approx(1.0)
    assert ratios(after)[("posts", "7d")] == pytest.approx(1.0)
    assert ratios(after)[("posts", "1d")] == pytest.approx(1.0)
    # [R - 7d + 1h, R + 1h) holds the posts at R - 7d + 2h ... R - 2h, every 2 hours:
    # 7 days of 12 less the one at R - 7d, which is before the window -> 83
    assert after.windows["7d"].posts == 7 * 12 - 1
