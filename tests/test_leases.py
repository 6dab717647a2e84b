"""Leases on a real PostgreSQL: each community held by one replica, shares even, a dead
replica's communities taken over once its leases expire, a new replica given work."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from monitor.config import settings_from_mapping
from monitor.leases import LeaseKeeper
from monitor.replicas import Replicas
from monitor.service import Service
from monitor.store import db
from monitor.telemetry import Telemetry
from tests.support import service_config

COMMUNITIES = [f"c{n:02d}" for n in range(20)]
LEASE = 2.0


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    made = db.make_engine(pg_url)
    db.upgrade(made)
    yield made
    made.dispose()


def keepers(engine: Engine, count: int, *, lease: float = LEASE) -> list[LeaseKeeper]:
    return [LeaseKeeper(engine, me=f"replica-{n}", lease_seconds=lease) for n in range(count)]


def settle(replicas: list[LeaseKeeper], rounds: int = 3) -> list[frozenset[str]]:
    """Every replica runs ``rounds`` rounds in turn; what each holds at the end."""
    for _ in range(rounds):
        for replica in replicas:
            replica.round(COMMUNITIES)
    return [replica.held() for replica in replicas]


def assert_partition(held: list[frozenset[str]]) -> None:
    """Every community held by exactly one replica."""
    assert sorted(c for part in held for c in part) == COMMUNITIES


def test_three_replicas_divide_twenty_communities_evenly(engine: Engine) -> None:
    held = settle(keepers(engine, 3))
    assert_partition(held)
    assert sorted(len(part) for part in held) == [6, 7, 7]  # ceil(20 / 3) = 7 at most


def test_claims_racing_from_threads_give_each_community_one_holder(engine: Engine) -> None:
    replicas = keepers(engine, 4)
    for replica in replicas:  # all four live before anyone claims: shares of 5
        replica.round([])
    barrier = threading.Barrier(len(replicas))

    def race(replica: LeaseKeeper) -> None:
        barrier.wait()
        replica.round(COMMUNITIES)

    threads = [threading.Thread(target=race, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = [replica.held() for replica in replicas]
    assert all(len(part) <= 5 for part in held)
    assert len({c for part in held for c in part}) == sum(len(part) for part in held)  # disjoint
    assert_partition(settle(replicas))


def test_a_dead_replicas_communities_are_taken_over_after_its_lease(engine: Engine) -> None:
    replicas = keepers(engine, 3)
    before = settle(replicas)
    dead = replicas.pop()  # SIGKILL: it never renews nor hands back
    survivors = [replica.round(COMMUNITIES).held for replica in replicas]
    assert not set().union(*survivors) & before[2]  # its leases still run
    threading.Event().wait(LEASE + 0.2)  # the lease runs out (real time: PostgreSQL's clock)
    for replica in replicas:
        replica.round(COMMUNITIES)  # counts 2 live replicas, shares of 10, claims
    after = settle(replicas, rounds=1)
    assert_partition(after)
    assert before[2] <= after[0] | after[1]
    assert dead.held() == frozenset()  # past 0.8 of its lease: it had stopped polling too


def test_a_replica_stopping_hands_its_communities_over_at_once(engine: Engine) -> None:
    replicas = keepers(engine, 3, lease=60.0)
    before = settle(replicas)
    replicas.pop().release()
    after = settle(replicas, rounds=2)  # no waiting for a 60 s lease
    assert_partition(after)
    assert before[2] <= after[0] | after[1]


def test_a_new_replica_is_given_its_share(engine: Engine) -> None:
    replicas = keepers(engine, 2)
    assert sorted(len(part) for part in settle(replicas)) == [10, 10]
    replicas += keepers(engine, 4)[3:4]  # a fourth-named replica joins: three now
    held = settle(replicas)
    assert_partition(held)
    assert sorted(len(part) for part in held) == [6, 7, 7]


def test_a_stalled_replica_stops_polling_before_its_lease_runs_out(engine: Engine) -> None:
    clock = {"now": 1000.0}
    replica = LeaseKeeper(engine, me="slow", lease_seconds=60.0, monotonic=lambda: clock["now"])
    replica.round(COMMUNITIES)
    assert replica.holds("c00")
    clock["now"] += 0.8 * 60.0  # no round for 48 s (a stalled process, a long GC pause)
    assert not replica.holds("c00") and replica.held() == frozenset()


def test_a_community_no_longer_configured_is_handed_back(engine: Engine) -> None:
    replica = keepers(engine, 1)[0]
    replica.round(COMMUNITIES)
    state = replica.round(COMMUNITIES[:15])
    assert state.held == frozenset(COMMUNITIES[:15]) and state.unheld == 0
    other = LeaseKeeper(engine, me="other", lease_seconds=LEASE)
    # a second replica (share 10) finds the five handed back free to claim
    assert set(COMMUNITIES[15:]) <= other.round(COMMUNITIES).held


def test_unheld_counts_communities_nobody_holds(engine: Engine) -> None:
    first, second = keepers(engine, 2, lease=60.0)
    first.round([])
    second.round([])  # two live replicas: a share is ceil(20 / 2) = 10
    state = first.round(COMMUNITIES)
    assert len(state.held) == 10 and state.unheld == 10
    assert second.round(COMMUNITIES).unheld == 0


async def test_a_round_cancelled_by_the_shutdown_finishes_before_the_release(
    engine: Engine,
) -> None:
    """Stopping the scheduler cancels a lease round in flight, but its thread goes on: the
    release must wait for it, or the round renews what the release just handed back."""
    replicas = Replicas(
        engine=engine,
        communities=COMMUNITIES,
        lease_seconds=60.0,
        telemetry=Telemetry(CollectorRegistry()),
    )
    assert len(await replicas.round()) == 20
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE relation = 'leases'::regclass AND NOT granted"
    )
    with engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE"))
        round_in_flight = asyncio.ensure_future(replicas.round())
        deadline = time.monotonic() + 60
        while blocker.execute(waiting).scalar_one() != 1:  # the round waits on the table
            assert time.monotonic() < deadline, "the round never reached the leases"
            await asyncio.sleep(0.05)
        round_in_flight.cancel()  # what the scheduler's shutdown does to a running job
        release = asyncio.ensure_future(replicas.release())
        await asyncio.sleep(1.0)  # time for a release that does not wait to reach the table
        assert blocker.execute(waiting).scalar_one() == 1, "the release did not wait"
        assert not release.done()
        blocker.rollback()  # the round goes on, then the release
    with pytest.raises(asyncio.CancelledError):
        await round_in_flight
    await release
    with engine.connect() as connection:
        live = connection.execute(
            text("SELECT count(*) FROM leases WHERE expires_at > extract(epoch FROM now())")
        ).scalar_one()
    assert live == 0


async def test_a_lease_round_running_when_the_service_stops_logs_no_error(
    engine: Engine, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler's shutdown cancels the lease round in flight: a clean stop, with the
    leases handed back after the round and no ERROR with a traceback from the scheduler."""
    data = service_config(
        tmp_path,
        [{"id": c, "source": "rss", "url": f"http://127.0.0.1:9/{c}"} for c in COMMUNITIES[:3]],
    )
    data["database_url"] = pg_url
    service = Service(settings_from_mapping(data), registry=CollectorRegistry())
    await service.open()
    submitted = asyncio.Event()
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE relation = 'leases'::regclass AND NOT granted"
    )
    with engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE"))
        service.schedule()
        assert service.scheduler is not None
        service.scheduler.pause_job("analysis")
        for job in service.scheduler.get_jobs():
            if job.id.startswith("poll:") or job.id == "prune":
                job.pause()
        service.scheduler.add_listener(
            lambda event: event.job_id == "leases" and submitted.set(), EVENT_JOB_SUBMITTED
        )
        await asyncio.wait_for(submitted.wait(), 60)
        deadline = time.monotonic() + 60
        while blocker.execute(waiting).scalar_one() != 1:  # the round waits on the table
            assert time.monotonic() < deadline, "the lease round never reached the leases"
            await asyncio.sleep(0.05)
        caplog.set_level(logging.ERROR)
        stopping = asyncio.ensure_future(service.stop())
        await asyncio.sleep(0.5)
        blocker.rollback()  # the round goes on, then the release
    await asyncio.wait_for(stopping, 60)
    await asyncio.sleep(0.5)  # a cancelled job's last step (and its log) runs here
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    with engine.connect() as connection:
        live = connection.execute(
            text("SELECT count(*) FROM leases WHERE expires_at > extract(epoch FROM now())")
        ).scalar_one()
    assert live == 0
