"""The write path under load: many polls at once on SQLite never meet a locked database,
and no text is scored while a write transaction is open.

The forums are the demo's simulated ones (``monitor.fakeforum.scenario``): communities
of 30 days x 20 posts, so every first poll scores and writes some 600 posts.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor import ingest
from monitor.config import settings_from_mapping
from monitor.fakeforum.scenario import (
    DEMO_KEYWORDS,
    CommunityPlan,
    MoodMix,
    SimPost,
    Simulation,
)
from monitor.service import Service
from monitor.store import db
from tests.support import service_config

LOCKED = "database is locked"


def plans(count: int) -> tuple[CommunityPlan, ...]:
    return tuple(
        CommunityPlan(
            id=f"c{n:03d}",
            title=f"community {n}",
            source="reddit" if n % 2 == 0 else "discourse",
            forum=f"sub{n:03d}" if n % 2 == 0 else f"/d{n:03d}",
            threads_per_day=4,
            replies_per_day=16,
            participants_per_day=10,
            mood=MoodMix(positive=0.4, negative=0.15),
            keywords={"pay": 0.05},
        )
        for n in range(count)
    )


def communities_of(simulation: Simulation) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for plan in simulation.plans.values():
        entry: dict[str, Any] = {"id": plan.id, "source": plan.source, "history_days": 30}
        if plan.source == "reddit":
            entry.update(subreddit=plan.forum, base_url=simulation.base_url)
        else:
            entry["base_url"] = simulation.base_url_for(plan)
        found.append(entry)
    return found


@pytest.fixture
def forums(request: pytest.FixtureRequest) -> Iterator[Simulation]:
    simulation = Simulation(plans(request.param)).start()
    simulation.load_history(now=int(time.time()), days=30, seed=5)
    try:
        yield simulation
    finally:
        simulation.stop()


@pytest.mark.parametrize("forums", [48], indirect=True)
async def test_many_polls_at_once_on_sqlite_never_meet_a_locked_database(
    forums: Simulation,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """48 first polls of ~600 posts each, all admitted at once. Writers of one process
    take turns, so none ever waits on SQLite's lock: even with no busy timeout at all
    (a writer meeting the lock fails at once), every poll commits."""
    pragmas = db._sqlite_pragmas

    def without_busy_timeout(connection: Any, record: Any) -> None:
        pragmas(connection, record)
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    monkeypatch.setattr(db, "_sqlite_pragmas", without_busy_timeout)
    data = service_config(tmp_path, communities_of(forums), read_timeout="30s", total_timeout="60s")
    data["max_concurrent_polls"] = 48
    data["keywords"] = DEMO_KEYWORDS
    service = Service(settings_from_mapping(data), registry=CollectorRegistry())
    await service.open()
    caplog.set_level(logging.WARNING)
    try:
        outcomes = {o.community: o for o in await service.poll_all()}
    finally:
        await service.stop()
    assert {o.outcome for o in outcomes.values()} == {"ok"}, {
        name: o.error for name, o in outcomes.items() if o.outcome != "ok"
    }
    assert min(o.new_items for o in outcomes.values()) > 500  # each a whole first poll
    assert not [r for r in caplog.records if LOCKED in r.getMessage()]


def write_transaction_open(path: Path) -> bool:
    """Whether some connection holds the store's write lock (a write transaction is open):
    a second connection's ``BEGIN IMMEDIATE`` fails at once if so."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if LOCKED in str(exc):
            return True
        raise
    else:
        probe.execute("ROLLBACK")
        return False
    finally:
        probe.close()


@pytest.mark.parametrize("forums", [4], indirect=True)
async def test_no_text_is_scored_while_a_write_transaction_is_open(
    forums: Simulation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls one at a time (so any open write transaction is the scoring poll's own);
    each time ingest scores a text, the store's write lock must be free. A first poll
    and a later one with new posts and new authors are both checked."""
    data = service_config(tmp_path, communities_of(forums))
    data["max_concurrent_polls"] = 1
    data["keywords"] = DEMO_KEYWORDS
    settings = settings_from_mapping(data)
    store = Path(settings.resolved_database_url().removeprefix("sqlite:///"))
    scored = 0
    inside: list[str] = []
    score = ingest.sentiment

    def checked(text: str) -> float:
        nonlocal scored
        scored += 1
        if write_transaction_open(store):
            inside.append(text)
        return score(text)

    monkeypatch.setattr(ingest, "sentiment", checked)
    service = Service(settings, registry=CollectorRegistry())
    await service.open()
    try:
        first = await service.poll_all()
        now = int(time.time())
        for plan in forums.plans.values():
            thread = forums.recent_threads(plan.id, 1)[0]
            newcomer = f"{plan.id}_newcomer"
            reply = SimPost(-1, now - 5, newcomer, "Great news about the pay rate")
            forums.add_reply(plan, thread, reply)
        second = await service.poll_all()
    finally:
        await service.stop()
    assert {o.outcome for o in first + second} == {"ok"}
    assert [o.new_items for o in second] == [1] * len(second)
    stored = sum(o.new_items for o in first + second)
    assert stored > 2000
    assert scored >= stored  # every stored post was scored, under watch
    assert inside == []
