"""Capacity as the store ages: refresh cost, startup and steady-state analysis work.

Stores are written directly with bulk inserts (COPY on PostgreSQL), as the
service would have left them: posts, threads, authors, daily rollups, one poll
run every 5 minutes (a bounded poll leaves a short gap in coverage every 30
days) and, where the schema has them, the merged coverage spans of those runs.

(a) Per-community refresh CPU (a full recompute of one community's snapshot)
    on a young store (polled for a week, its first polls reaching 120 days back,
    so every window, series and baseline the analysis reads is as full as it
    will ever be) and on one polled every 5 minutes for a year, with the same
    activity; refreshed in turn so load weighs on both alike; the database
    server's CPU included on PostgreSQL. Every poll run of the year is kept,
    the worst case (just after an upgrade, before the first prune).
(b) Startup with 1,000 communities and a year of history: ``Service.prepare``,
    ``open`` and the scheduler start, as ``serve`` runs them before it answers
    ``/readyz``, in this process; then a real ``forum-monitor serve`` to its first
    200 on ``/readyz``, against the same 1,000 communities on an empty store
    started in turn (the baseline). Then the background analysis of every
    community, until the last snapshot exists.
(c) Analysis work per 5 minutes in steady state at 1,000 communities, on a
    controlled clock: each community polled once per 5 minutes at its own
    moment, 30% of polls bringing posts, the scheduler's analysis job run every
    tick; CPU of analysis only (client and, on PostgreSQL, server), against the
    old schedule (every community every minute and after every poll) estimated
    from full recomputes timed in the same run.

``python -m bench.capacity_age [--parts abc] [--no-postgres] [--communities N]`` prints the
table (``--help`` for the other sizes); ``age_rows()`` returns its rows. The whole run takes
about 10 minutes on a busy 2-core machine, most of it writing the two 1,000-community
stores.

Runs on the code before coverage spans too (part a only), for the "before" row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, inspect, select
from sqlmodel import Session

from bench.pgcluster import PgCluster, process_cpu_seconds, unavailable
from monitor.analysis import snapshot as snapshot_module
from monitor.analysis.coverage import merge_spans
from monitor.analysis.rollups import DAY, day_of, refresh_days
from monitor.analysis.text import NEGATIVE_THRESHOLD
from monitor.config import Settings, settings_from_mapping
from monitor.ingest import AUTHORS as AUTHOR_TABLE
from monitor.store import db, retention

NOW = 1_795_000_000 - 1_795_000_000 % DAY + 13 * 3600 + 17 * 60
"""A fixed "now", 13:17 UTC, so windows do not start on day boundaries."""
POLL_SECONDS = 300
THREAD_LENGTH = 10
AUTHORS = 400
GAP_EVERY_DAYS = 30
"""A bounded poll that could not reach back leaves a gap this often."""


@dataclass(frozen=True)
class Shape:
    """How much history a store holds."""

    communities: int
    days: int
    """Days of posts (the first poll reached back to the first of them)."""
    posts_per_day: int
    polled_days: int
    """Days the service has polled every 5 minutes."""
    kept_days: int
    """Days of those poll runs still stored (older ones pruned); coverage spans keep all."""


def settings_for(count: int, *, database_url: str, data_dir: Path) -> Settings:
    return settings_from_mapping(
        {
            "database_url": database_url,
            "data_dir": str(data_dir),
            "pseudonym_key": "capacity-age-bench-key-0123456789abcdef",
            "keywords": {"pay": ["pay cut"], "onboarding": ["unpaid onboarding"]},
            "communities": [
                {"id": f"c{n:04d}", "source": "reddit", "subreddit": f"sub{n}", "interval": "5m"}
                for n in range(count)
            ],
        }
    )


def _write(engine: Engine, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Bulk rows: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor:  # type: ignore[attr-defined]
                # rows consistent by construction: no foreign-key trigger per row
                cursor.execute("SET LOCAL session_replication_role = replica")
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            connection.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )


def poll_runs(shape: Shape) -> tuple[list[tuple[int, int, str, int]], list[tuple[int, int]]]:
    """(started, finished, outcome, covered_from) of the kept runs, and the merged spans of
    all: a first poll reaching back to the first post, then one every 5 minutes."""
    first = NOW - shape.polled_days * DAY
    runs: list[tuple[int, int, str, int]] = []
    spans: list[tuple[int, int]] = []
    keep_from = NOW - shape.kept_days * DAY
    previous = NOW - shape.days * DAY
    gap_every = GAP_EVERY_DAYS * DAY // POLL_SECONDS
    for n, started in enumerate(range(first, NOW - 60, POLL_SECONDS)):
        finished = started + 2
        covered_from = started if n % gap_every == gap_every - 1 else previous
        spans.append((covered_from, finished))
        if started >= keep_from:
            runs.append((started, finished, "ok", covered_from))
        previous = finished
    return runs, merge_spans(spans)


def fill(engine: Engine, settings: Settings, shape: Shape, *, seed: int = 5) -> None:
    """``shape`` worth of history for every community of ``settings``."""
    chance = random.Random(seed)
    has_spans = "coverage_spans" in inspect(engine).get_table_names()
    runs, spans = poll_runs(shape)
    step = DAY / shape.posts_per_day
    total = shape.days * shape.posts_per_day
    first_post = NOW - shape.days * DAY
    for community in settings.communities:
        cid = community.id
        last = runs[-1][1] if runs else NOW - 60
        _write(engine, "communities", ("id", "source", "created_at"), [(cid, "reddit", first_post)])
        _write(
            engine,
            "poll_state",
            (
                "community_id",
                "cursor",
                "validators",
                "last_attempt_at",
                "last_success_at",
                "consecutive_failures",
            ),
            [(cid, "{}", "{}", last, last, 0)],
        )
        created = [int(first_post + p * step) for p in range(total)]
        author_of = [chance.randrange(AUTHORS) for _ in range(total)]
        first_seen: dict[int, int] = {}
        last_seen: dict[int, int] = {}
        for at, author in zip(created, author_of, strict=True):
            first_seen.setdefault(author, at)
            last_seen[author] = at
        _write(
            engine,
            "authors",
            ("community_id", "pseudonym", "first_seen", "last_seen"),
            [(cid, f"{cid}-{a:04d}", first_seen[a], last_seen[a]) for a in sorted(first_seen)],
        )
        with engine.connect() as connection:
            rows = connection.execute(
                select(AUTHOR_TABLE.c.pseudonym, AUTHOR_TABLE.c.id).where(
                    AUTHOR_TABLE.c.community_id == cid
                )
            )
            author_ids = {int(alias.rsplit("-", 1)[1]): int(found) for alias, found in rows}
        posts: list[tuple[Any, ...]] = []
        threads: list[tuple[Any, ...]] = []
        days: dict[int, list[Any]] = {}
        for p, (at, author) in enumerate(zip(created, author_of, strict=True)):
            thread = f"t{p // THREAD_LENGTH}"
            kind = "thread" if p % THREAD_LENGTH == 0 else "reply"
            sentiment = chance.uniform(-1, 1)
            author_id = author_ids[author]
            if kind == "thread":
                threads.append((cid, thread, author_id, at, THREAD_LENGTH - 1, int(at + step), at))
            posts.append(
                (
                    cid,
                    f"p{p}",
                    thread,
                    kind,
                    author_id,
                    at,
                    False,
                    sentiment,
                    "pay" if p % 17 == 0 else "",
                    "",
                    NOW,
                )
            )
            day = days.setdefault(day_of(at), [0, 0, set(), 0.0, 0, 0])
            day[0] += 1
            day[1] += kind == "thread"
            day[2].add(author)
            day[3] += sentiment
            day[4] += 1
            day[5] += sentiment <= NEGATIVE_THRESHOLD
        _write(
            engine,
            "posts",
            (
                "community_id",
                "external_id",
                "thread_external_id",
                "kind",
                "author_id",
                "created_at",
                "deleted",
                "sentiment",
                "keyword_groups",
                "content_hash",
                "fetched_at",
            ),
            posts,
        )
        _write(
            engine,
            "threads",
            (
                "community_id",
                "external_id",
                "author_id",
                "created_at",
                "reply_count",
                "first_reply_at",
                "last_activity_at",
            ),
            threads,
        )
        new_by_day: dict[int, int] = {}
        for at in first_seen.values():
            new_by_day[day_of(at)] = new_by_day.get(day_of(at), 0) + 1
        _write(
            engine,
            "daily_rollups",
            (
                "community_id",
                "day",
                "posts",
                "threads_started",
                "replies",
                "active_participants",
                "new_participants",
                "sentiment_sum",
                "sentiment_count",
                "negative_posts",
                "updated_at",
            ),
            [
                (cid, day, n, t, n - t, len(who), new_by_day.get(day, 0), s, c, neg, NOW)
                for day, (n, t, who, s, c, neg) in sorted(days.items())
            ],
        )
        _write(
            engine,
            "poll_runs",
            (
                "community_id",
                "started_at",
                "finished_at",
                "outcome",
                "new_items",
                "requests",
                "covered_from",
            ),
            [(cid, s, f, o, 0, 1, c) for s, f, o, c in runs],
        )
        if has_spans:
            _write(
                engine,
                "coverage_spans",
                ("community_id", "covered_from", "covered_until"),
                [(cid, start, end) for start, end in spans],
            )
    if engine.dialect.name == "postgresql":  # as autovacuum would have, over the months
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")


@contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def new_store(url: str) -> Engine:
    engine = db.make_engine(url)
    db.upgrade(engine)
    return engine


class Cpu:
    """CPU seconds of this process, plus the database server's on PostgreSQL."""

    def __init__(self, server: PgCluster | None) -> None:
        self._server = server

    def __call__(self) -> float:
        spent = time.process_time()
        return spent + (self._server.cpu_seconds() if self._server is not None else 0.0)


# (a) ---------------------------------------------------------------------------------

YOUNG_POLLED_DAYS = 7
YEAR = 365
AGE_COMMUNITIES = 4
AGE_POSTS_PER_DAY = 274
BLOCK = 8
AGE_BLOCKS = 8
"""Blocks of BLOCK recomputes per store (``--blocks``)."""


def full_recompute(engine: Engine, settings: Settings, community_index: int) -> None:
    community = settings.communities[community_index % len(settings.communities)]
    with Session(engine) as session:
        snapshot_module.compute_snapshot(session, settings=settings, community=community, now=NOW)


def refresh_cpu(stores: Sequence[tuple[Engine, Settings]], cpu: Cpu, *, blocks: int) -> list[float]:
    """Median CPU seconds of one full recompute on each store: blocks of BLOCK recomputes,
    the stores in turn (the server's CPU is counted in 10 ms ticks, hence blocks)."""
    timings: list[list[float]] = [[] for _ in stores]
    for block in range(blocks):
        for (engine, settings), found in zip(stores, timings, strict=True):
            started = cpu()
            for n in range(BLOCK):
                full_recompute(engine, settings, block * BLOCK + n)
            found.append((cpu() - started) / BLOCK)
    return [statistics.median(found) for found in timings]


def age_part(url_for: Any, cpu: Cpu, folder: Path, label: str) -> list[tuple[str, str, str]]:
    """A week-old service whose first polls reached 120 days back (every window, series
    and baseline full) against one that polled every 5 minutes for a year."""
    shapes = {
        "young": Shape(
            AGE_COMMUNITIES, 120, AGE_POSTS_PER_DAY, YOUNG_POLLED_DAYS, YOUNG_POLLED_DAYS
        ),
        "year": Shape(AGE_COMMUNITIES, YEAR, AGE_POSTS_PER_DAY, YEAR, YEAR),
    }
    stores = []
    for name, shape in shapes.items():
        url = url_for(f"age-{name}")
        settings = settings_for(AGE_COMMUNITIES, database_url=url, data_dir=folder)
        engine = new_store(url)
        fill(engine, settings, shape)
        stores.append((engine, settings))
    for engine, settings in stores:  # warm caches alike
        full_recompute(engine, settings, 0)
    young, old = refresh_cpu(stores, cpu, blocks=AGE_BLOCKS)
    if PROFILE:
        print_profile(*stores[-1], label=label)
    for engine, _ in stores:
        engine.dispose()
    ratio = old / young
    verdict = "PASS" if ratio <= 1.2 else "FAIL"
    return [
        (f"(a) {label}: refresh, young store", f"{young * 1000:.1f} ms CPU", "baseline"),
        (
            f"(a) {label}: refresh, a year of polls",
            f"{old * 1000:.1f} ms CPU",
            f"ratio {ratio:.2f} (target <= 1.2) {verdict}",
        ),
    ]


PROFILE = False
"""``--profile``: print where a refresh on the year-old store spends its time."""


def print_profile(engine: Engine, settings: Settings, *, label: str) -> None:
    import cProfile
    import io
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for n in range(40):
        full_recompute(engine, settings, n)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
    stats.print_stats(r"monitor/|fetchall|execute' of", 12)
    print(f"profile of 40 refreshes, a year of polls, {label}:", out.getvalue(), file=sys.stderr)


# (b), (c) ----------------------------------------------------------------------------

FLEET = 1000
FLEET_POSTS_PER_DAY = 10
STEADY_MINUTES = 5
SERVE_RUNS = 1
"""Starts of ``serve`` per store (``--serve-runs``); the median is reported."""
NEWS_SHARE = 0.3


def fleet_shape(fleet: int) -> Shape:
    kept = getattr(retention, "POLL_HISTORY_DAYS", 400)
    return Shape(fleet, YEAR, FLEET_POSTS_PER_DAY, YEAR, min(YEAR, kept))


class Clock:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> float:
        return float(self.at)


def startup_in_process(settings: Settings, cpu: Cpu) -> tuple[float, float, float, float]:
    """(wall, CPU) to ready as ``serve`` gets there, then (wall, CPU) until every
    community has a snapshot."""
    from monitor.service import Service

    async def run() -> tuple[float, float, float, float]:
        wall, spent = time.perf_counter(), cpu()
        service = Service(settings, registry=CollectorRegistry())
        service.prepare()
        await service.open()
        service.schedule()
        assert service.ready and service.scheduler is not None
        ready_wall, ready_cpu = time.perf_counter() - wall, cpu() - spent
        service.scheduler.pause()  # no polls: the analysis job alone, as its first tick runs
        wall, spent = time.perf_counter(), cpu()
        await service.analyse()
        assert service.snapshots is not None
        assert len(service.snapshots.all()) == len(settings.communities)
        warm_wall, warm_cpu = time.perf_counter() - wall, cpu() - spent
        await service.stop()
        return ready_wall, ready_cpu, warm_wall, warm_cpu

    return asyncio.run(run())


STOPS: list[float] = []
"""Wall seconds each ``serve`` took to exit after SIGTERM."""


def serve_until_ready(
    settings_file: Path, folder: Path, server: PgCluster | None
) -> tuple[float, float]:
    """Wall and CPU seconds (serve's, and the database server's) from starting
    ``forum-monitor serve`` to its first 200 on /readyz."""
    with socket_port() as port:
        pass
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    server_cpu = server.cpu_seconds() if server is not None else 0.0
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--config", str(settings_file)]
        + ["--listen", f"127.0.0.1:{port}"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    wall = time.perf_counter() - started
                    spent = process_cpu_seconds(process.pid)
                    if server is not None:
                        spent += server.cpu_seconds() - server_cpu
                    return wall, spent
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError("serve exited before it was ready")
            if time.perf_counter() - started > 600:
                raise RuntimeError("serve was not ready in 10 minutes")
            time.sleep(0.05)
    finally:
        process.terminate()
        stopping = time.perf_counter()
        process.wait(timeout=300)
        STOPS.append(time.perf_counter() - stopping)


def config_file(folder: Path, name: str, url: str, fleet: int) -> Path:
    communities = "".join(
        f'[[communities]]\nid = "c{n:04d}"\nsource = "reddit"\nsubreddit = "sub{n}"\n'
        f'base_url = "http://127.0.0.1:1"\ninterval = "5m"\n'
        for n in range(fleet)
    )
    path = folder / f"{name}.toml"
    path.write_text(
        f'data_dir = "{folder}"\ndatabase_url = "{url}"\n'
        f'pseudonym_key = "capacity-age-bench-key-0123456789abcdef"\n'
        f'contact = "capacity-bench@example.org"\n{communities}'
    )
    return path


def steady_state(settings: Settings, cpu: Cpu) -> tuple[float, int, float]:
    """(analysis CPU per 5 minutes, recomputes per 5 minutes, CPU of one full recompute)
    with every community polled once per 5 minutes, after the first snapshots."""
    from monitor.service import Service
    from monitor.sources.base import Batch, Envelope, Item

    chance = random.Random(11)
    clock = Clock(NOW + 60)
    recomputes: Counter[str] = Counter()
    compute = snapshot_module.compute_snapshot

    def counted(session: Session, **kwargs: Any) -> Any:
        recomputes[kwargs["community"].id] += 1
        return compute(session, **kwargs)

    async def run() -> tuple[float, int, float]:
        service = Service(settings, registry=CollectorRegistry(), clock=clock)
        await service.open()
        service.schedule()
        assert service.scheduler is not None and service.engine and service.ingestor
        service.scheduler.pause()  # polls are simulated below; the analysis job by hand
        job = service.scheduler.get_job("analysis")
        tick = int(job.trigger.interval.total_seconds())
        await job.func()  # the first snapshots
        snapshot_module.compute_snapshot = counted
        offset = {c.id: chance.randrange(300) for c in settings.communities}
        spent = 0.0
        serial = 0
        for _ in range(STEADY_MINUTES * 60 // tick):
            now = clock.at
            polled = [c for c in settings.communities if (offset[c.id] - now) % 300 < tick]
            for community in polled:
                items = []
                if chance.random() < NEWS_SHARE:
                    for _ in range(chance.randint(1, 3)):
                        serial += 1
                        items.append(
                            Item(
                                external_id=f"n{serial}",
                                kind="thread",
                                thread_id=f"n{serial}",
                                created_at=now - chance.randrange(250),
                                author=f"a{chance.randrange(400)}",
                                text="the pay cut again",
                            )
                        )
                batch = Batch(
                    envelopes=[Envelope(community.id, "reddit", now, i) for i in items],
                    cursor={},
                    validators={},
                    requests=1,
                    not_modified=False,
                )
                with db.session_scope(service.engine) as session:  # what the poller writes
                    result = service.ingestor.ingest(
                        session, community=community, batch=batch, started_at=now - 1, now=now
                    )
                    refresh_days(
                        session, community_id=community.id, days=result.touched_days, now=now
                    )
            started = cpu()
            for community in polled:
                await service.after_poll(community)
            await job.func()
            spent += cpu() - started
            clock.at += tick
        snapshot_module.compute_snapshot = compute
        started = cpu()
        for n in range(40):
            full_recompute(service.engine, settings, n * 25)
        full = (cpu() - started) / 40
        await service.stop()
        windows = STEADY_MINUTES / 5
        return spent / windows, round(sum(recomputes.values()) / windows), full

    try:
        return asyncio.run(run())
    finally:
        snapshot_module.compute_snapshot = compute


def fleet_part(
    url_for: Any,
    server: PgCluster | None,
    folder: Path,
    label: str,
    parts: str,
    fleet: int,
) -> list[tuple[str, str, str]]:
    cpu = Cpu(server)
    rows: list[tuple[str, str, str]] = []
    url = url_for("fleet")
    settings = settings_for(fleet, database_url=url, data_dir=folder)
    engine = new_store(url)
    built = time.perf_counter()
    fill(engine, settings, fleet_shape(fleet))
    engine.dispose()
    print(
        f"  built the {label} store of {fleet} communities in {time.perf_counter() - built:.0f} s",
        file=sys.stderr,
    )
    if "b" in parts:
        ready_wall, ready_cpu, warm_wall, warm_cpu = startup_in_process(settings, cpu)
        empty_url = url_for("empty")
        new_store(empty_url).dispose()
        configs = [
            config_file(folder, f"empty-{label}", empty_url, fleet),
            config_file(folder, f"full-{label}", url, fleet),
        ]
        runs: list[list[tuple[float, float]]] = [[], []]
        STOPS.clear()
        for _ in range(SERVE_RUNS):  # in turn, so load weighs on both alike
            for config, found in zip(configs, runs, strict=True):
                found.append(serve_until_ready(config, folder, server))
        (empty_wall, empty_cpu), (full_wall, full_cpu) = (
            (statistics.median(w for w, _ in found), statistics.median(c for _, c in found))
            for found in runs
        )
        verdict = "PASS" if full_cpu < 10 else "FAIL"
        rows += [
            (
                f"(b) {label}: open + scheduler, in process",
                f"{ready_cpu:.2f} CPU-s",
                f"{ready_wall:.2f} s wall",
            ),
            (
                f"(b) {label}: serve to /readyz, empty store",
                f"{empty_cpu:.2f} CPU-s",
                f"{empty_wall:.2f} s wall; baseline",
            ),
            (
                f"(b) {label}: serve to /readyz, a year",
                f"{full_cpu:.2f} CPU-s",
                f"{full_wall:.2f} s wall; CPU ratio {full_cpu / empty_cpu:.2f}; "
                f"target < 10 s {verdict}",
            ),
            (
                f"(b) {label}: serve's exit after SIGTERM, slowest",
                f"{max(STOPS):.1f} s wall",
                "info",
            ),
            (
                f"(b) {label}: every snapshot, in the background",
                f"{warm_cpu:.1f} CPU-s",
                f"{warm_wall:.1f} s wall",
            ),
        ]
    if "c" in parts:
        per_window, recomputed, full = steady_state(settings, cpu)
        old = fleet * 6 * full  # every snapshot every minute, and after every poll
        rows += [
            (
                f"(c) {label}: analysis per 5 min",
                f"{per_window:.2f} CPU-s",
                f"{recomputed} recomputes; {per_window / 300:.1%} of a core",
            ),
            (
                f"(c) {label}: old schedule per 5 min (est.)",
                f"{old:.0f} CPU-s",
                f"{fleet * 6} recomputes x {full * 1000:.1f} ms measured",
            ),
        ]
    return rows


def age_rows(
    *, parts: str = "abc", use_postgres: bool = True, fleet: int = FLEET
) -> list[tuple[str, str, str]]:
    """The benchmark's rows: (measure, result, judgement)."""
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="capacity-age-") as name:
        folder = Path(name)

        def sqlite_url(store: str) -> str:
            return f"sqlite:///{folder / f'{store}.db'}"

        cpu = Cpu(None)
        if "a" in parts:
            rows += age_part(sqlite_url, cpu, folder, "SQLite")
        if "b" in parts or "c" in parts:
            rows += fleet_part(sqlite_url, None, folder, "SQLite", parts, fleet)
        if not use_postgres:
            return rows
        reason = unavailable()
        if reason is not None:
            rows.append(("PostgreSQL", "skipped", reason))
            return rows
        with PgCluster(prefix="capacity-age-pg-") as server:
            cpu = Cpu(server)
            if "a" in parts:
                rows += age_part(server.create_database, cpu, folder, "PostgreSQL")
            if "b" in parts or "c" in parts:
                rows += fleet_part(
                    server.create_database, server, folder, "PostgreSQL", parts, fleet
                )
    return rows


def main(argv: Sequence[str] = ()) -> bool:
    global PROFILE, AGE_BLOCKS, SERVE_RUNS, STEADY_MINUTES
    parser = argparse.ArgumentParser(prog="python -m bench.capacity_age")
    parser.add_argument("--parts", default="abc", help="which of a, b, c to run (default abc)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--communities", type=int, default=FLEET, help=f"for (b) and (c) (default {FLEET})"
    )
    parser.add_argument(
        "--blocks", type=int, default=AGE_BLOCKS, help=f"(a): blocks of {BLOCK} recomputes"
    )
    parser.add_argument(
        "--serve-runs", type=int, default=SERVE_RUNS, help="(b): starts of serve per store"
    )
    parser.add_argument(
        "--steady-minutes", type=int, default=STEADY_MINUTES, help="(c): simulated minutes"
    )
    parser.add_argument("--profile", action="store_true", help="profile (a)'s year-old store")
    args = parser.parse_args(list(argv))
    PROFILE, AGE_BLOCKS = args.profile, args.blocks
    SERVE_RUNS, STEADY_MINUTES = args.serve_runs, args.steady_minutes
    started = time.perf_counter()
    rows = age_rows(parts=args.parts, use_postgres=not args.no_postgres, fleet=args.communities)
    rows.append(("whole run", f"{time.perf_counter() - started:.0f} s wall", "info"))
    width = max(len(measure) for measure, _, _ in rows)
    print("capacity as the store ages (CPU: this process, and the server on PostgreSQL)")
    for measure, result, judgement in rows:
        print(f"  {measure:<{width}}  {result:>16}  {judgement}")
    return not any("FAIL" in judgement for _, _, judgement in rows)


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
