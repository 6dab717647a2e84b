"""Analysis recomputes a community when its data changed or its windows have moved on,
not every community every minute; a start does not wait for every snapshot.

The service runs on a controlled clock; the scheduler's jobs are paused and its
analysis job is run by hand, tick by tick, at the interval it was scheduled with.
Recomputes are counted per community at ``compute_snapshot``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import Session

from monitor.analysis import snapshot as snapshot_module
from monitor.analysis.plan import MAX_AGE_SECONDS, phase
from monitor.api import create_app
from monitor.config import Settings, settings_from_mapping
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.ingest import Ingestor, record_backfill
from monitor.service import Service
from monitor.store import db
from monitor.store.changes import data_version
from monitor.store.models import PollState
from tests.analysis import fixture as fx
from tests.support import service_config, serving

HOUR = 3600
DAY = 86400
START = 1_780_000_000 - 1_780_000_000 % DAY + 7 * HOUR
"""The controlled clock's start: 07:00 UTC, so the hours below stay in one UTC day."""


class Clock:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> float:
        return float(self.at)


class Recomputes:
    """``compute_snapshot`` and ``daily_series`` calls, counted per community; with a
    ``gate``, every snapshot waits until the gate is opened."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, gate: threading.Event | None = None
    ) -> None:
        self.snapshots: Counter[str] = Counter()
        self.series: Counter[str] = Counter()
        self.at: dict[str, list[int]] = defaultdict(list)
        compute, series = snapshot_module.compute_snapshot, snapshot_module.daily_series

        def counted_compute(session: Session, **kwargs: Any) -> Any:
            community = kwargs["community"].id
            self.snapshots[community] += 1
            self.at[community].append(kwargs["now"])
            if gate is not None:  # held until the test opens it
                assert gate.wait(60), "the test never let the analysis go on"
            return compute(session, **kwargs)

        def counted_series(session: Session, **kwargs: Any) -> Any:
            self.series[kwargs["community_id"]] += 1
            return series(session, **kwargs)

        monkeypatch.setattr(snapshot_module, "compute_snapshot", counted_compute)
        monkeypatch.setattr(snapshot_module, "daily_series", counted_series)


def settings_for(tmp_path: Path, base_url: str, count: int) -> Settings:
    return settings_from_mapping(
        service_config(
            tmp_path,
            [
                {
                    "id": f"c{n}",
                    "source": "reddit",
                    "subreddit": f"sub{n}",
                    "base_url": base_url,
                    "interval": "5m",
                    "history_days": 2,
                }
                for n in range(count)
            ],
        )
    )


async def paused_service(settings: Settings, clock: Clock) -> Service:
    service = Service(settings, registry=CollectorRegistry(), clock=clock)
    await service.open()
    service.schedule()
    assert service.scheduler is not None
    service.scheduler.pause()  # jobs are run by hand, on the controlled clock
    return service


async def run_ticks(service: Service, clock: Clock, seconds: int) -> None:
    """The scheduler's analysis job, run at its own interval for ``seconds``."""
    assert service.scheduler is not None
    job = service.scheduler.get_job("analysis")
    assert job is not None
    tick = int(job.trigger.interval.total_seconds())
    for _ in range(seconds // tick):
        await job.func()
        clock.at += tick


def polled_history(settings: Settings, engine_url: str, *, until: int) -> None:
    """One successful poll of every community, reaching back two days, at ``until``."""
    engine = fx.make_store(url=engine_url)
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    for community in settings.communities:
        fx.ingest(engine, ingestor, settings, community.id, [], now=until, since=until - 2 * DAY)
    engine.dispose()


async def test_quiet_communities_are_recomputed_every_few_minutes_spread_over_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing changes for an hour: each community is recomputed once per MAX_AGE_SECONDS
    (not once a minute), and not all in the same tick."""
    clock = Clock(START)
    settings = settings_for(tmp_path, "http://127.0.0.1:1", 10)
    polled_history(settings, settings.resolved_database_url(), until=START)
    recomputes = Recomputes(monkeypatch)
    service = await paused_service(settings, clock)
    try:
        await run_ticks(service, clock, HOUR)
    finally:
        await service.stop()
    periodic = HOUR // MAX_AGE_SECONDS
    assert MAX_AGE_SECONDS >= 300
    for community in settings.communities:
        # the first snapshot, then one every MAX_AGE_SECONDS (the first after a share of it)
        assert periodic <= recomputes.snapshots[community.id] <= periodic + 1, recomputes.snapshots
    # the daily series was built once: the day did not end and the data did not change
    assert set(recomputes.series.values()) == {1}
    # spread: the periodic recomputes of the 10 communities fall in different ticks
    phases = {at % MAX_AGE_SECONDS for times in recomputes.at.values() for at in times[1:]}
    assert len(phases) >= 5, phases


@pytest.fixture
def reddit() -> Iterator[tuple[FakeReddit, FakeForumServer]]:
    fake = FakeReddit()
    router = Router()
    fake.register(router)
    server = FakeForumServer(router)
    with server:
        yield fake, server


async def test_a_poll_recomputes_its_community_only_when_it_changed_the_data(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reddit: tuple[FakeReddit, FakeForumServer],
) -> None:
    fake, server = reddit
    for n in range(3):
        fake.add_subreddit(f"sub{n}")
    thread = fake.add_thread("sub0", created=START - HOUR, author="alice")
    fake.add_reply(thread, created=START - HOUR + 60, author="bob")
    clock = Clock(START)
    settings = settings_for(tmp_path, server.base_url, 3)
    recomputes = Recomputes(monkeypatch)
    service = await paused_service(settings, clock)
    assert service.snapshots is not None
    c0, c1, _ = settings.communities
    try:
        await run_ticks(service, clock, 10)  # the first snapshots
        assert recomputes.snapshots == {"c0": 1, "c1": 1, "c2": 1}

        # first poll: two posts and coverage reaching two days back -> recomputed at once
        assert (await service.poll(c0)).new_items == 2
        assert recomputes.snapshots["c0"] == 2
        latest = service.snapshots.get("c0")
        assert latest is not None and latest.windows["1d"].posts == 2
        assert (latest.last_success_at, latest.coverage["1d"]) == (clock.at, 1.0)

        # a poll that finds nothing new, within the grace interval: no recompute, but the
        # snapshot carries the poll's success
        clock.at += 300
        assert (await service.poll(c0)).new_items == 0
        assert recomputes.snapshots["c0"] == 2
        latest = service.snapshots.get("c0")
        assert latest is not None and latest.last_success_at == clock.at

        # a failed poll: no recompute, its error is shown
        server.inject(Fault("status", status=503, count=10))
        clock.at += 300
        assert (await service.poll(c0)).outcome == "http_5xx"
        assert recomputes.snapshots["c0"] == 2
        latest = service.snapshots.get("c0")
        assert latest is not None and latest.last_error is not None
        server.clear()

        # a reply after the outage: recomputed at once, the error gone
        fake.add_reply(thread, created=clock.at - 30, author="carol")
        clock.at += 300
        assert (await service.poll(c0)).new_items == 1
        assert recomputes.snapshots["c0"] == 3
        latest = service.snapshots.get("c0")
        assert latest is not None and latest.windows["1d"].posts == 3
        assert latest.last_error is None

        # another community's poll recomputes only that community
        assert (await service.poll(c1)).outcome == "ok"
        assert recomputes.snapshots == {"c0": 3, "c1": 2, "c2": 1}
    finally:
        await service.stop()


async def test_flows_after_polls_wait_in_proportion_to_their_cost(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reddit: tuple[FakeReddit, FakeForumServer],
) -> None:
    """A namespace whose flows took ``cost`` seconds is recomputed after polls with news at
    most every ``FLOWS_COST_RATIO`` x ``cost`` (here 0.3 s x 100 = 30 s), not every
    ``FLOWS_REFRESH_SECONDS``; polls with nothing new never ask for one."""
    from monitor import service as service_module

    fake, server = reddit
    for n in range(2):
        fake.add_subreddit(f"sub{n}")
    clock = Clock(START)
    settings = settings_for(tmp_path, server.base_url, 2)
    service = await paused_service(settings, clock)
    assert service.snapshots is not None
    monkeypatch.setattr(service_module, "FLOWS_COST_RATIO", 100)
    computed: list[int] = []
    compute = service.snapshots.refresh_flows

    def slow(**kwargs: Any) -> None:
        time.sleep(0.3)
        computed.append(clock.at)
        compute(**kwargs)

    monkeypatch.setattr(service.snapshots, "refresh_flows", slow)
    c0, c1 = settings.communities

    async def poll_with_news(community: Any, sub: str) -> None:
        fake.add_thread(sub, created=clock.at - 30, author=f"a{clock.at}")
        assert (await service.poll(community)).new_items == 1

    try:
        await poll_with_news(c0, "sub0")
        assert computed == [START]
        clock.at += 20  # past FLOWS_REFRESH_SECONDS, not past 100 x 0.3 s
        await poll_with_news(c1, "sub1")
        assert computed == [START]
        clock.at += 11  # 31 s after the last: due, and its news is still pending
        assert (await service.poll(c0)).new_items == 0
        assert computed == [START, START + 31]
        clock.at += 40  # due again, but nothing new since
        assert (await service.poll(c1)).new_items == 0
        assert computed == [START, START + 31]
    finally:
        await service.stop()


async def test_a_backfill_by_another_process_is_picked_up_at_the_next_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(START)
    settings = settings_for(tmp_path, "http://127.0.0.1:1", 3)
    polled_history(settings, settings.resolved_database_url(), until=START)
    recomputes = Recomputes(monkeypatch)
    service = await paused_service(settings, clock)
    assert service.snapshots is not None
    try:
        await run_ticks(service, clock, 10)
        assert recomputes.snapshots == {"c0": 1, "c1": 1, "c2": 1}
        assert phase("c2") * MAX_AGE_SECONDS > 60  # not due by age in the ticks below
        before = service.snapshots.get("c2")
        assert before is not None and before.coverage["7d"] < 1.0

        # `forum-monitor backfill` beside serve: its own engine, its own transaction
        other = db.make_engine(settings.resolved_database_url())
        with db.session_scope(other) as session:
            record_backfill(
                session,
                community_id="c2",
                covered_from=START - 10 * DAY,
                covered_until=START - DAY,
                new_items=0,
                requests=3,
            )
        other.dispose()
        await run_ticks(service, clock, 10)
        assert recomputes.snapshots["c2"] == 2  # at once, not MAX_AGE_SECONDS later
        after = service.snapshots.get("c2")
        assert after is not None and after.coverage["7d"] == 1.0

        # a backfill of time already covered changes nothing, so nothing is recomputed
        with db.session_scope(service.engine) as session:  # type: ignore[arg-type]
            record_backfill(
                session,
                community_id="c2",
                covered_from=START - 5 * DAY,
                covered_until=START - 2 * DAY,
                new_items=0,
                requests=1,
            )
        await run_ticks(service, clock, 10)
        assert recomputes.snapshots["c2"] == 2
    finally:
        await service.stop()


async def test_the_daily_series_is_rebuilt_when_a_day_ends_not_on_every_recompute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(START)
    settings = settings_for(tmp_path, "http://127.0.0.1:1", 1)
    polled_history(settings, settings.resolved_database_url(), until=START)
    recomputes = Recomputes(monkeypatch)
    service = await paused_service(settings, clock)
    assert service.snapshots is not None
    try:
        await run_ticks(service, clock, 16 * HOUR)  # 07:00 -> 23:00, no data
        same_day = recomputes.snapshots["c0"]
        assert same_day >= 16 * HOUR // MAX_AGE_SECONDS
        assert recomputes.series["c0"] == 1
        await run_ticks(service, clock, 2 * HOUR)  # past midnight
        assert recomputes.series["c0"] == 2
        latest = service.snapshots.get("c0")
        assert latest is not None
        assert latest.daily[-1].day == START - 7 * HOUR  # the day that ended is in the series
    finally:
        await service.stop()


def test_ready_before_every_snapshot_exists_and_the_rest_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the analysis held back, /readyz answers 200 while no community has a snapshot
    yet; they are listed as warming up, and their snapshots appear once it goes on. (The
    analysis is held by a gate, not slowed by a pause: on a busy machine the pause let
    most snapshots finish before the first answer, and a service whose readiness waited
    for the analysis is never ready here.)"""
    settings = settings_for(tmp_path, "http://127.0.0.1:1", 8)
    polled_history(settings, settings.resolved_database_url(), until=int(time.time()))
    gate = threading.Event()
    recomputes = Recomputes(monkeypatch, gate=gate)
    service = Service(settings, registry=CollectorRegistry())
    with serving(create_app(service)) as url:
        try:
            deadline = time.monotonic() + 60
            while httpx.get(url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline, "never ready while the analysis is held"
                time.sleep(0.05)
            listed = httpx.get(url + "/api/v1/communities").json()["communities"]
            waiting = [c["id"] for c in listed if c["computed_at"] is None]
            assert len(waiting) == 8, listed
            assert {c["status"] for c in listed if c["computed_at"] is None} == {"warming up"}
            page = httpx.get(url + "/").text
            assert f'data-community="{waiting[-1]}" data-verdict="warming up"' in page
        finally:
            gate.set()
        deadline = time.monotonic() + 60
        while any(c["computed_at"] is None for c in listed):
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
            listed = httpx.get(url + "/api/v1/communities").json()["communities"]
        assert {c["status"] for c in listed} <= {"down", "warming up", "steady"}
    assert set(recomputes.snapshots) == {c.id for c in settings.communities}


async def test_a_start_restores_poll_health_without_analysing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last success and error of every community are carried over a restart from the
    poll state, before any snapshot is computed."""
    clock = Clock(START)
    settings = settings_for(tmp_path, "http://127.0.0.1:1", 2)
    polled_history(settings, settings.resolved_database_url(), until=START - 600)
    engine = db.make_engine(settings.resolved_database_url())
    with db.session_scope(engine) as session:
        state = session.get(PollState, "c1")
        assert state is not None
        state.last_error = "503 Service Unavailable"
        session.add(state)
        assert data_version(session, community_id="c1") >= 0
    engine.dispose()
    recomputes = Recomputes(monkeypatch)
    service = Service(settings, registry=CollectorRegistry(), clock=clock)
    await service.open()
    try:
        assert recomputes.snapshots == {}
        sample = service.registry.get_sample_value
        assert sample("forum_monitor_last_success_timestamp_seconds", {"community": "c0"}) == (
            START - 600
        )
        assert sample("forum_monitor_source_up", {"community": "c0"}) == 1
        assert sample("forum_monitor_source_up", {"community": "c1"}) == 0
    finally:
        await service.stop()
