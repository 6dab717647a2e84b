"""Capacity: how many communities one process polls without falling behind.

``python -m bench capacity`` (bursts at N = 10 and 100, steady state at 100, about 20
minutes on a busy 2-core machine; then the other capacity sections, ``bench/__main__.py``)
or ``python -m bench.capacity --full`` (both parts at N = 10, 100 and 1,000; also
``FORUM_MONITOR_BENCH_FULL=1`` for ``python -m bench capacity``, about 80 minutes).
``python -m bench.capacity --help`` lists the flags (``--sizes``, ``--stores``,
``--parts``, ``--repeats``, ``--py-spy``, ``--steady-window``).

The forums are the fakes of ``monitor.fakeforum`` (Reddit and Discourse, half each), run
in a child process on 127.0.0.1 so that their CPU is not the service's; every community
holds 30 days x 20 posts a day (about 600 posts) and is configured with
``history_days = 30``, so a first poll reads all of it. The service is the real one
(``monitor.service.Service``: its scheduler, HTTP client, poller, ingest, store and
analysis) in this process; CPU is this process's (``getrusage``), and on PostgreSQL the
database server's too (its processes' ``/proc/<pid>/stat``), reported apart.

Parts, each a function returning ``Row``s (``PARTS``; another part adds its function):

- **bursts**: on a fresh store, the first round of ``serve``'s scheduler (interval 5m,
  until every community has had its first poll) against ``poll-once`` on the same set
  (``Service.poll_all``), alternated: failed polls, "database is locked" log lines,
  wall time and CPU-s of each, and serve's wall time over poll-once's. Target: 0
  failed polls, no "database is locked", ratio <= 1.2.
- **steady**: what ``serve`` does once its first round is behind it. A store is filled by
  ``poll-once`` (every community's 30 days), then a new ``Service`` on it runs its
  scheduler as ``serve`` does after a restart: each community polled at its slot of the
  5-minute interval through the admission queue, the analysis job every 10 s
  (recomputing what changed or is 5 minutes old, ``monitor.analysis.plan``), every
  namespace's participant flows every 5 minutes and after polls with news, the hourly
  prune, on PostgreSQL the lease rounds; the fakes post at their real rate. Once the
  start's work is done (every snapshot computed, no poll waiting, the start's prune
  run), a window of ``STEADY_WINDOW`` (5 minutes: one poll per community, one age
  recompute per community, one run of every namespace's flows, whose cycle the window
  starts) is measured at the real settings, with /metrics (``Service.exposition``)
  scraped every 30 s as Prometheus would. CPU is split by component (thread CPU time
  of each synchronous part, ``time.thread_time``): the poll's reads, its preparation
  (known hashes, pseudonyms, scoring), its write transaction; the analysis after a poll;
  the analysis job (due checks, recomputes); flows; scrapes; lease rounds; and the rest
  (HTTP, parsing, the event loop, the scheduler) as process CPU minus those. One prune
  is measured alone after the window and counted as 1/12 per 5 minutes. PostgreSQL's
  server CPU is reported apart. Target (the issue's): <= 50 % of one core at 1,000
  communities; these stores are young (30 days), and the rows say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench.pgcluster import PgCluster, process_cpu_seconds, unavailable
from monitor.analysis.plan import MAX_AGE_SECONDS
from monitor.config import Settings, settings_from_mapping
from monitor.poller import source_of
from monitor.service import FLOWS_ALL_SECONDS, PRUNE_INTERVAL_SECONDS, Service

POSTS_PER_DAY = 20
HISTORY_DAYS = 30
INTERVAL = "5m"
STEADY_WINDOW = 300.0
"""Seconds of steady state measured: one poll interval, one cycle of the analysis plan
(``plan.MAX_AGE_SECONDS``) and of every namespace's flows (``FLOWS_ALL_SECONDS``)."""
STEADY_MIN_SIZE = 100
"""Below this the steady part is measured only with ``--full`` (it is all noise)."""
SETTLE_SECONDS = 10.0
"""Quiet seconds after the start's work before the steady window opens."""
REAL_SCRAPE_INTERVAL = 30
"""Prometheus' default scrape interval."""
REAL_INTERVAL_SECONDS = 300
CYCLE_SECONDS = max(REAL_INTERVAL_SECONDS, MAX_AGE_SECONDS, FLOWS_ALL_SECONDS)
"""A window this long holds every periodic piece of steady-state work at least once."""
DEFAULT_SIZES = (10, 100)
FULL_SIZES = (10, 100, 1000)
RATIO_TARGET = 1.2
CORE_SHARE_TARGET = 0.5
ROUND_TIMEOUT = 1800.0
KEY = "capacity-bench-key-0123456789abcdef"
LOCKED = "database is locked"


@dataclass(frozen=True)
class Row:
    """One line of the capacity table."""

    part: str
    store: str
    communities: int
    measure: str
    value: str
    target: str = ""
    verdict: str = "info"

    def cells(self) -> tuple[str, ...]:
        """The row as ``print_table`` writes it, in the columns of ``HEADER``."""
        return (
            self.part,
            self.store,
            f"{self.communities:,}",
            self.measure,
            self.value,
            self.target,
            self.verdict,
        )


HEADER = ("part", "store", "N", "measure", "value", "target", "result")


@dataclass
class Context:
    """What every part shares: sizes, stores, a scratch folder, the PostgreSQL cluster."""

    sizes: tuple[int, ...]
    stores: tuple[str, ...]
    workdir: Path
    repeats: int = 1
    profile: bool = False
    full: bool = False
    limit: int | None = None
    """``max_concurrent_polls``; None: the default."""
    steady_window: float = STEADY_WINDOW
    steady_age: str = "young"
    """The steady part's store: "young" (filled by a first round) or "year" (a year)."""
    postgres: PgCluster | None = None
    _databases: int = 0

    def database_url(self, store: str, name: str) -> str:
        self._databases += 1
        if store == "sqlite":
            folder = self.workdir / f"{name}-{self._databases}"
            folder.mkdir(parents=True)
            return f"sqlite:///{folder / 'store.db'}"
        assert self.postgres is not None
        return self.postgres.create_database(f"{name.replace('-', '_')}_{self._databases}")

    def data_dir(self) -> Path:
        self._databases += 1
        folder = self.workdir / f"data-{self._databases}"
        folder.mkdir(parents=True, mode=0o700)
        return folder


Part = Callable[[Context], list[Row]]


# --------------------------------------------------------------------- CPU clocks


def process_cpu() -> float:
    """CPU-seconds of this process so far, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------- fake forums


def fake_plans(count: int) -> list[Any]:
    from monitor.fakeforum.scenario import CommunityPlan, MoodMix

    plans = []
    for n in range(count):
        reddit = n % 2 == 0
        plans.append(
            CommunityPlan(
                id=f"c{n:04d}",
                title=f"capacity community {n}",
                source="reddit" if reddit else "discourse",
                forum=f"cap{n:04d}" if reddit else f"/d{n:04d}",
                threads_per_day=4,
                replies_per_day=POSTS_PER_DAY - 4,
                participants_per_day=10,
                mood=MoodMix(positive=0.4, negative=0.15),
                keywords={"pay": 0.05},
            )
        )
    return plans


def run_fakes(count: int, *, seed: int, speed: float) -> None:
    """The child process: fakes for ``count`` communities, until stdin closes."""
    from monitor.fakeforum.scenario import LivePoster, Simulation

    now = int(time.time())
    simulation = Simulation(tuple(fake_plans(count))).start()
    posts = simulation.load_history(now=now, days=HISTORY_DAYS, seed=seed)
    poster = LivePoster(simulation, speed=speed, seed=seed, now0=now).start() if speed else None
    communities = []
    for plan in simulation.plans.values():
        entry: dict[str, Any] = {"id": plan.id, "source": plan.source}
        if plan.source == "reddit":
            entry.update(subreddit=plan.forum, base_url=simulation.base_url)
        else:
            entry["base_url"] = simulation.base_url_for(plan)
        communities.append(entry)
    print(json.dumps({"posts": posts, "communities": communities}), flush=True)
    sys.stdin.read()
    if poster is not None:
        poster.stop()
    simulation.stop()


class Fakes:
    """Fake forums in a child process (``python -m bench.capacity fakes``)."""

    def __init__(self, count: int, *, seed: int = 11, speed: float = 0.0) -> None:
        self.count = count
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.capacity", "fakes", str(count), str(seed), str(speed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fake forums did not start")
        found = json.loads(line)
        self.posts: int = found["posts"]
        self.communities: list[dict[str, Any]] = found["communities"]

    def cpu(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def fakes(count: int, *, speed: float = 0.0) -> Iterator[Fakes]:
    running = Fakes(count, speed=speed)
    try:
        yield running
    finally:
        running.close()


def settings_for(
    context: Context, store: str, communities: list[dict[str, Any]], *, name: str, interval: Any
) -> Settings:
    from monitor.fakeforum.scenario import DEMO_KEYWORDS

    limit = {"max_concurrent_polls": context.limit} if context.limit else {}
    return settings_from_mapping(
        {
            **limit,
            "database_url": context.database_url(store, name),
            "data_dir": str(context.data_dir()),
            "pseudonym_key": KEY,
            "log_level": "warning",
            "keywords": DEMO_KEYWORDS,
            # the fakes share one host; the polite defaults (Reddit's 10 a minute) would
            # measure the rate limit, not the service
            "http": {"rate_per_minute": {"127.0.0.1": 1_000_000}},
            "communities": [
                {**c, "interval": interval, "history_days": HISTORY_DAYS} for c in communities
            ],
        }
    )


# --------------------------------------------------------------------- PostgreSQL


def server_cpu_split(cluster: PgCluster) -> dict[str, float]:
    """``cluster.cpu_seconds()`` by kind of server process: the service's connections, the
    background processes (checkpointer, autovacuum launcher, ...), and those ended (reaped
    autovacuum workers and connections)."""
    postmaster = process_cpu_seconds(cluster.pid)
    ended = process_cpu_seconds(cluster.pid, children=True) - postmaster
    split = {"connections": 0.0, "background": postmaster, "ended": ended}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == cluster.pid:
            kind = "connections" if "127.0.0.1(" in command else "background"
            if "autovacuum worker" in command:
                kind = "autovacuum"
            split[kind] = split.get(kind, 0.0) + process_cpu_seconds(int(entry.name))
    return split


# --------------------------------------------------------------------- the service


class LogTally(logging.Handler):
    """Counts warning and error lines, and those naming a locked database."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.locked = 0
        self.lines = 0
        self.examples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            message += f" ({record.exc_info[0].__name__})"
        self.lines += 1
        if LOCKED in message:
            self.locked += 1
        if len(self.examples) < 3 and message not in self.examples:
            self.examples.append(message)


@contextlib.contextmanager
def tallied_logs() -> Iterator[LogTally]:
    """Warnings and errors counted instead of printed (a failed round logs one per poll)."""
    root = logging.getLogger()
    tally = LogTally()
    saved = root.handlers[:], root.level
    root.handlers[:] = [tally]
    root.setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        yield tally
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


@dataclass
class PollTally:
    """Outcomes per community read from the service's own telemetry."""

    succeeded: set[str] = field(default_factory=set)
    failed: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    polls: float = 0.0
    coalesced: float = 0.0

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def seen(self) -> set[str]:
        return self.succeeded | set(self.failed)


def poll_tally(registry: CollectorRegistry) -> PollTally:
    tally = PollTally()
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "forum_monitor_last_success_timestamp_seconds" and sample.value:
                tally.succeeded.add(sample.labels["community"])
            elif sample.name == "forum_monitor_poll_failures_total" and sample.value:
                tally.failed[sample.labels["community"]] += int(sample.value)
                tally.reasons[sample.labels["reason"]] += int(sample.value)
            elif sample.name == "forum_monitor_polls_total":
                tally.polls += sample.value
            elif sample.name == "forum_monitor_polls_coalesced_total":
                tally.coalesced += sample.value
    return tally


@dataclass
class RoundResult:
    mode: str
    communities: int
    wall: float
    cpu: float
    failed: int
    locked: int
    reasons: Counter[str]
    database_cpu: float = 0.0
    complete: bool = True
    examples: list[str] = field(default_factory=list)


class FirstOutcomes:
    """Each community's first poll outcome, noted as the poller returns it (no scanning of
    metrics, which would cost the service's process CPU of its own)."""

    def __init__(self, service: Service) -> None:
        assert service.poller is not None
        self.count = len([c for c in service.settings.communities if c.enabled])
        self.outcomes: dict[str, str] = {}
        self.done = asyncio.Event()
        poll = service.poller.poll

        async def noted(community: Any) -> Any:
            found = await poll(community)
            if found.outcome != "deferred":
                self.outcomes.setdefault(community.id, found.outcome)
                if len(self.outcomes) >= self.count:
                    self.done.set()
            return found

        service.poller.poll = noted  # type: ignore[method-assign]

    async def wait(self, *, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def first_round(
    settings: Settings, *, mode: str, database_cpu: Callable[[], float] | None = None
) -> RoundResult:
    """``serve``'s first round (its scheduler) or ``poll-once`` on a fresh store."""
    count = len(settings.communities)
    with tallied_logs() as logs:
        service = Service(settings, registry=CollectorRegistry())
        await service.open()
        first = FirstOutcomes(service)
        try:
            db0 = database_cpu() if database_cpu else 0.0
            cpu0, wall0 = process_cpu(), time.perf_counter()
            if mode == "poll-once":
                await service.poll_all()
                complete = True
            else:
                service.schedule()
                complete = await first.wait(timeout=ROUND_TIMEOUT)
            wall, cpu = time.perf_counter() - wall0, process_cpu() - cpu0
            db_cpu = (database_cpu() - db0) if database_cpu else 0.0
            tally = poll_tally(service.registry)
        finally:
            await service.stop()
    return RoundResult(
        mode,
        count,
        wall,
        cpu,
        tally.failures,
        logs.locked,
        tally.reasons,
        database_cpu=db_cpu,
        complete=complete,
        examples=logs.examples,
    )


# --------------------------------------------------------------------- profiling


class PySpy:
    """``py-spy record`` of this process while the block runs; ``top`` summarizes it."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(os.getpid()), "--rate", "50", "--format", "raw"]
            + ["--output", str(self.output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def top(self, limit: int = 12) -> list[tuple[str, float, float]]:
        """(function, % own, % total) of the busiest functions, by own samples."""
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        samples = 0
        if not self.output.exists():
            return []
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [f for f in stack.split(";") if " (" in f]
            if not frames:
                continue
            samples += count
            own[_short(frames[-1])] += count
            for name in {_short(f) for f in frames}:
                total[name] += count
        if not samples:
            return []
        return [
            (name, 100 * n / samples, 100 * total[name] / samples)
            for name, n in own.most_common(limit)
        ]

    def total_share(self, needle: str) -> float:
        """% of samples with a frame whose name contains ``needle``."""
        hits = samples = 0
        for line in self.output.read_text().splitlines() if self.output.exists() else []:
            stack, _, count_text = line.rpartition(" ")
            if count_text.isdigit():
                samples += int(count_text)
                if needle in stack:
                    hits += int(count_text)
        return 100 * hits / samples if samples else 0.0


def _short(frame: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"


# --------------------------------------------------------------------- bursts


def burst_rows(context: Context) -> list[Row]:
    rows: list[Row] = []
    for store in context.stores:
        for size in context.sizes:
            rows += _burst(context, store, size)
    return rows


def _burst(context: Context, store: str, size: int) -> list[Row]:
    results: dict[str, list[RoundResult]] = defaultdict(list)
    database_cpu = (
        context.postgres.cpu_seconds if store == "postgresql" and context.postgres else None
    )
    with fakes(size) as forums:
        for repeat in range(context.repeats):
            for mode in ("poll-once", "serve"):
                settings = settings_for(
                    context, store, forums.communities, name=f"{mode}-{size}", interval=INTERVAL
                )
                profile = context.profile and mode == "serve" and repeat == 0
                spy = PySpy(context.workdir / f"py-spy-{store}-{size}.txt") if profile else None
                with spy if spy is not None else contextlib.nullcontext():
                    found = asyncio.run(first_round(settings, mode=mode, database_cpu=database_cpu))
                results[mode].append(found)
                _progress(f"{store} N={size} {mode}: {_describe(found)}")
                if spy is not None:
                    _print_profile(spy, f"py-spy, serve's first round, {store}, N={size}")
    return _burst_table(store, size, results)


def _describe(found: RoundResult) -> str:
    text = (
        f"{found.wall:.1f} s wall, {found.cpu:.1f} CPU-s, {found.failed} failed "
        f"{dict(found.reasons)}, {found.locked} 'database is locked'"
    )
    if found.database_cpu:
        text += f", database {found.database_cpu:.1f} CPU-s"
    if not found.complete:
        text += ", round NOT complete"
    if found.examples:
        text += f"; e.g. {found.examples[0][:160]!r}"
    return text


def _burst_table(store: str, size: int, results: dict[str, list[RoundResult]]) -> list[Row]:
    once, serve = results["poll-once"], results["serve"]
    wall_once = sum(r.wall for r in once)
    wall_serve = sum(r.wall for r in serve)
    ratio = wall_serve / wall_once
    failed = sum(r.failed for r in serve)
    locked = sum(r.locked for r in serve) + sum(r.locked for r in once)
    rows = [
        Row("bursts", store, size, "poll-once: wall s / CPU-s / failed polls", _triple(once)),
        Row(
            "bursts",
            store,
            size,
            "serve first round: wall s / CPU-s / failed polls",
            _triple(serve),
        ),
        Row(
            "bursts",
            store,
            size,
            "serve: failed polls",
            str(failed),
            "0",
            "PASS" if failed == 0 and all(r.complete for r in serve) else "FAIL",
        ),
        Row(
            "bursts",
            store,
            size,
            "'database is locked' lines (both)",
            str(locked),
            "0",
            "PASS" if locked == 0 else "FAIL",
        ),
        Row(
            "bursts",
            store,
            size,
            "serve wall / poll-once wall",
            f"{ratio:.2f}",
            f"<= {RATIO_TARGET}",
            "PASS" if ratio <= RATIO_TARGET else "FAIL",
        ),
    ]
    if store == "postgresql":
        rows.append(
            Row(
                "bursts",
                store,
                size,
                "database server CPU-s: poll-once / serve",
                f"{sum(r.database_cpu for r in once) / len(once):.1f} / "
                f"{sum(r.database_cpu for r in serve) / len(serve):.1f}",
            )
        )
    return rows


def _triple(results: list[RoundResult]) -> str:
    n = len(results)
    return (
        f"{sum(r.wall for r in results) / n:.1f} / {sum(r.cpu for r in results) / n:.1f} / "
        f"{sum(r.failed for r in results) / n:g}"
    )


def _print_profile(spy: PySpy, title: str) -> None:
    print(f"  {title}: top functions by own samples (% own, % total)", flush=True)
    for name, own, total in spy.top():
        print(f"    {own:5.1f} % {total:5.1f} %  {name}", flush=True)
    for needle in (
        "_assign_requests_to_connections",
        "sentiment",
        "refresh_days",
        "compute_snapshot",
    ):
        print(f"    frames with {needle}: {spy.total_share(needle):.1f} % of samples", flush=True)


def _progress(line: str) -> None:
    print(f"  .. {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- steady state

COMPONENT: contextvars.ContextVar[str] = contextvars.ContextVar("component", default="poll")
"""The job the running code serves: "poll" (a poll and what follows it) or "analysis" (the
scheduler's analysis job); worker threads inherit it (``asyncio.to_thread`` copies it)."""

READS = "poll: reads (known?, cursor, resume point)"
PREPARE = "poll: prepare (known hashes, pseudonyms, scoring)"
WRITE = "poll: write transaction"
AFTER_CHECK = "after a poll: data version check"
AFTER_RECOMPUTE = "after a poll: recompute"
JOB_DUE = "analysis job: due check"
JOB_RECOMPUTE = "analysis job: recompute"
FLOWS_ALL = "flows: every 5 minutes"
FLOWS_AFTER = "flows: after a poll"
LEASES = "leases"
SCRAPES = "scrapes"


class CpuBook:
    """Thread CPU time of synchronous parts, by component."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.recording = False

    def add(self, name: str, seconds: float) -> None:
        if self.recording:
            with self._lock:
                self.seconds[name] += seconds
                self.calls[name] += 1

    def timed(
        self, name: str | Callable[[], str], function: Callable[..., Any]
    ) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name() if callable(name) else name, time.thread_time() - started)

        return wrapper


def _by_job(in_job: str, after_poll: str) -> Callable[[], str]:
    return lambda: in_job if COMPONENT.get() == "analysis" else after_poll


@contextlib.contextmanager
def instrumented(service: Service, book: CpuBook) -> Iterator[None]:
    """Wrap the service's synchronous parts (each runs in a worker thread, or is a scrape)
    so their thread CPU time is booked by component; the analysis job runs with
    ``COMPONENT`` "analysis", so a recompute it asks for is told from one a poll asks for."""
    import monitor.service as service_module

    assert service.poller is not None and service.snapshots is not None
    poller, snapshots = service.poller, service.snapshots
    for name in ("_is_known", "_load", "_resume_from"):
        setattr(poller, name, book.timed(READS, getattr(poller, name)))
    poller._prepare = book.timed(PREPARE, poller._prepare)  # type: ignore[method-assign]
    poller._commit = book.timed(WRITE, poller._commit)  # type: ignore[method-assign]
    poller._write_failure = book.timed(WRITE, poller._write_failure)  # type: ignore[method-assign]
    snapshots.refresh_state = book.timed(AFTER_CHECK, snapshots.refresh_state)  # type: ignore[method-assign]
    snapshots.refresh = book.timed(  # type: ignore[method-assign]
        _by_job(JOB_RECOMPUTE, AFTER_RECOMPUTE), snapshots.refresh
    )
    snapshots.refresh_flows = book.timed(  # type: ignore[method-assign]
        _by_job(FLOWS_ALL, FLOWS_AFTER), snapshots.refresh_flows
    )
    service.plan.due = book.timed(JOB_DUE, service.plan.due)  # type: ignore[method-assign]
    analyse = service.analyse

    async def analysis_job() -> None:
        token = COMPONENT.set("analysis")
        try:
            await analyse()
        finally:
            COMPONENT.reset(token)

    service.analyse = analysis_job  # type: ignore[method-assign]
    versions = service_module.data_versions
    # the job's read of every community's data version (a module function it calls)
    service_module.data_versions = book.timed(JOB_DUE, versions)
    try:
        yield
    finally:
        service_module.data_versions = versions


@dataclass
class SteadyResult:
    communities: int
    age: str
    window: float
    warmup: float
    cpu: float
    book: CpuBook
    polls: float
    failed: int
    locked: int
    coalesced: float
    scrapes: int
    prune_cpu: float
    prune_database_cpu: float
    database_cpu: float
    database_split: dict[str, float] = field(default_factory=dict)


YEAR_DAYS = 365
FILL_ROUNDS = 3
STORE_AGES = ("young", "year")


def fill_year(settings: Settings, sources: dict[str, str]) -> None:
    """A year of history for every community, written as ``bench.capacity_age`` writes it
    (posts at ``POSTS_PER_DAY``, daily rollups, a poll run every 5 minutes of which the
    last ``POLL_HISTORY_DAYS`` are kept, their merged coverage), ending now; the
    communities' cursors are empty, so each one's first poll resumes from its newest
    stored post (``steady`` runs that round before its window)."""
    from bench import capacity_age
    from monitor.store import retention

    engine = capacity_age.new_store(settings.resolved_database_url())
    saved = capacity_age.NOW
    capacity_age.NOW = int(time.time()) - 120
    try:
        shape = capacity_age.Shape(
            communities=len(settings.communities),
            days=YEAR_DAYS,
            posts_per_day=POSTS_PER_DAY,
            polled_days=YEAR_DAYS,
            kept_days=retention.POLL_HISTORY_DAYS,
        )
        capacity_age.fill(engine, settings, shape)
        with engine.begin() as connection:  # the builder writes every community as Reddit's
            for community_id, source in sources.items():
                connection.exec_driver_sql(
                    "UPDATE communities SET source = %s WHERE id = %s"
                    if engine.dialect.name == "postgresql"
                    else "UPDATE communities SET source = ? WHERE id = ?",
                    (source, community_id),
                )
        if engine.dialect.name == "postgresql":
            # what autovacuum would have done over the year; else it runs in the window
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM ANALYZE")
    finally:
        capacity_age.NOW = saved
        engine.dispose()


async def fill_store(settings: Settings) -> None:
    """Every community's history read by ``poll-once``: the store a ``serve`` restarted
    after its first round finds."""
    with tallied_logs():
        service = Service(settings, registry=CollectorRegistry())
        await service.open()
        try:
            missing = service.active_communities()
            for _ in range(FILL_ROUNDS):  # a poll failed on a loaded machine is polled again
                outcomes = await asyncio.gather(*(service.poll(c) for c in missing))
                failed = {o.community for o in outcomes if o.outcome not in ("ok", "not_modified")}
                missing = [c for c in missing if c.id in failed]
                if not missing:
                    return
        finally:
            await service.stop()
    raise RuntimeError(f"{len(missing)} first polls failed, e.g. {missing[0].id}")


async def settle(service: Service, pruned: asyncio.Event, *, timeout: float) -> None:
    """Until the start's work is done: every community has a snapshot, no poll waits (on
    PostgreSQL the start's lease round polls every community it gains at once), the
    gained communities are recomputed, and the start's prune has run."""
    assert service.snapshots is not None and service.polls is not None
    snapshots, polls = service.snapshots, service.polls
    ids = service.active_ids()
    deadline = time.perf_counter() + timeout
    while not (
        pruned.is_set()
        and polls.waiting == 0
        and not service._followups  # the lease round's recomputes
        and all(snapshots.get(community_id) is not None for community_id in ids)
    ):
        if time.perf_counter() > deadline:
            raise RuntimeError("the service did not settle after its start")
        await asyncio.sleep(1.0)
    await asyncio.sleep(SETTLE_SECONDS)


async def steady(
    settings: Settings,
    *,
    window: float,
    age: str = "young",
    database_cpu: Callable[[], float] | None = None,
    database_split: Callable[[], dict[str, float]] | None = None,
) -> SteadyResult:
    """``serve``'s scheduler restarted on a store filled by a first round (``age`` "young")
    or holding a year of history ("year"): after the start's work, ``window`` seconds of
    every job as it runs, with /metrics scraped every 30 s; then one prune alone (the
    job runs hourly)."""
    db_cpu = database_cpu or (lambda: 0.0)
    if age == "year":
        sources = {c.id: source_of(c) for c in settings.communities}
        built = time.perf_counter()
        await asyncio.to_thread(fill_year, settings, sources)
        _progress(f"a year of history written in {time.perf_counter() - built:.0f} s")
    # on the year's store, each first poll resumes from the newest stored post and sets
    # the cursor, so the window's polls are the ones that follow, as on the young store
    await fill_store(settings)
    book = CpuBook()
    with tallied_logs() as logs:
        service = Service(settings, registry=CollectorRegistry())
        await service.open()
        pruned = asyncio.Event()
        prune = service.prune

        async def noted_prune() -> None:
            try:
                await prune()
            finally:
                pruned.set()

        service.prune = noted_prune  # type: ignore[method-assign]
        try:
            with instrumented(service, book):
                started = time.perf_counter()
                service.schedule()
                if service.replicas is not None and service.replicas.keeper is not None:
                    keeper = service.replicas.keeper
                    keeper.round = book.timed(LEASES, keeper.round)  # type: ignore[method-assign]
                await settle(service, pruned, timeout=ROUND_TIMEOUT)
                warmup = time.perf_counter() - started
                before = poll_tally(service.registry)
                locked = logs.locked
                # the window starts a cycle of the every-5-minutes flows (the job's next
                # tick runs it), so it holds one run, as every 5 minutes do
                service._flows_all_at = -math.inf
                split0 = database_split() if database_split else {}
                db0, cpu0, wall0 = db_cpu(), process_cpu(), time.perf_counter()
                book.recording = True
                scrapes = 0
                while time.perf_counter() - wall0 < window:
                    begun = time.thread_time()
                    service.exposition()  # what GET /metrics serves
                    book.add(SCRAPES, time.thread_time() - begun)
                    scrapes += 1
                    next_scrape = min(wall0 + scrapes * REAL_SCRAPE_INTERVAL, wall0 + window)
                    await asyncio.sleep(max(0.0, next_scrape - time.perf_counter()))
                book.recording = False
                wall, cpu = time.perf_counter() - wall0, process_cpu() - cpu0
                window_db = db_cpu() - db0
                split = database_split() if database_split else {}
                split = {k: v - split0.get(k, 0.0) for k, v in split.items()}
                after = poll_tally(service.registry)
                locked = logs.locked - locked
                assert service.scheduler is not None and service.polls is not None
                service.scheduler.pause()
                if service.polls.tasks:
                    await asyncio.wait(service.polls.tasks, timeout=60)
                await asyncio.sleep(1.0)
                db0, cpu0 = db_cpu(), process_cpu()
                await prune()
                prune_cpu, prune_db = process_cpu() - cpu0, db_cpu() - db0
        finally:
            await service.stop()
    return SteadyResult(
        communities=len(settings.communities),
        age=age,
        window=wall,
        warmup=warmup,
        cpu=cpu,
        book=book,
        polls=after.polls - before.polls,
        failed=after.failures - before.failures,
        locked=locked,
        coalesced=after.coalesced - before.coalesced,
        scrapes=scrapes,
        prune_cpu=prune_cpu,
        prune_database_cpu=prune_db,
        database_cpu=window_db,
        database_split=split,
    )


def steady_rows(context: Context) -> list[Row]:
    rows: list[Row] = []
    sizes = [s for s in context.sizes if context.full or s >= STEADY_MIN_SIZE]
    for store in context.stores:
        for size in sizes:
            cluster = context.postgres if store == "postgresql" else None
            # the fakes post at their real rate: 20 posts a day per community
            with fakes(size, speed=1.0) as forums:
                settings = settings_for(
                    context, store, forums.communities, name=f"steady-{size}", interval=INTERVAL
                )
                found = asyncio.run(
                    steady(
                        settings,
                        window=context.steady_window,
                        age=context.steady_age,
                        database_cpu=cluster.cpu_seconds if cluster else None,
                        database_split=partial(server_cpu_split, cluster) if cluster else None,
                    )
                )
            _progress(
                f"{store} N={size} steady, {found.age} store: {found.polls:.0f} polls, "
                f"{found.cpu:.1f} CPU-s in {found.window:.0f} s "
                f"after a {found.warmup:.0f} s start; "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(found.book.seconds.items()))
            )
            rows += _steady_table(store, found)
    return rows


def _steady_table(store: str, found: SteadyResult) -> list[Row]:
    n = found.communities
    seconds, calls = found.book.seconds, found.book.calls
    scale = REAL_INTERVAL_SECONDS / found.window
    prune_5m = found.prune_cpu * REAL_INTERVAL_SECONDS / PRUNE_INTERVAL_SECONDS

    def per5(*names: str) -> float:
        return scale * sum(seconds[name] for name in names)

    booked = sum(seconds.values())
    rest = scale * (found.cpu - booked)
    polls_5m = per5(READS, PREPARE, WRITE) + rest
    total_5m = found.cpu * scale + prune_5m
    share = total_5m / REAL_INTERVAL_SECONDS

    def each(name: str) -> str:
        return f"{1000 * seconds[name] / calls[name]:.1f} ms each" if calls[name] else "none"

    age_text = "young store" if found.age == "young" else "a year of history"
    cycle = "" if found.window >= CYCLE_SECONDS else " (shorter than a cycle: a smoke test)"
    rows = [
        Row(
            "steady",
            store,
            n,
            f"window: {found.window:.0f} s at a 5-minute interval, {age_text}{cycle}",
            f"{found.polls:.0f} polls, {found.failed} failed, {found.locked} 'database is "
            f"locked', {found.coalesced:.0f} coalesced; {found.cpu:.1f} CPU-s "
            f"(start before it: {found.warmup:.0f} s)",
        ),
        Row(
            "steady",
            store,
            n,
            "per 5 min: polls (reads / prepare / write transaction / HTTP, parsing, loop)",
            f"{polls_5m:.1f} CPU-s ({per5(READS):.1f} / {per5(PREPARE):.1f} / "
            f"{per5(WRITE):.1f} / {rest:.1f})",
        ),
        Row(
            "steady",
            store,
            n,
            "per 5 min: analysis after a poll (version check; recomputes)",
            f"{per5(AFTER_CHECK, AFTER_RECOMPUTE):.1f} CPU-s ({per5(AFTER_CHECK):.1f}; "
            f"{calls[AFTER_RECOMPUTE]} x {each(AFTER_RECOMPUTE)})",
        ),
        Row(
            "steady",
            store,
            n,
            "per 5 min: analysis job, every 10 s (due checks; recomputes)",
            f"{per5(JOB_DUE, JOB_RECOMPUTE):.1f} CPU-s ({per5(JOB_DUE):.1f}; "
            f"{calls[JOB_RECOMPUTE]} x {each(JOB_RECOMPUTE)})",
        ),
        Row(
            "steady",
            store,
            n,
            "per 5 min: participant flows (every 5 min; after polls)",
            f"{per5(FLOWS_ALL, FLOWS_AFTER):.1f} CPU-s ({calls[FLOWS_ALL]} x "
            f"{each(FLOWS_ALL)}; {calls[FLOWS_AFTER]} x {each(FLOWS_AFTER)})",
        ),
        Row(
            "steady",
            store,
            n,
            "per 5 min: scrapes of /metrics (every 30 s)",
            f"{per5(SCRAPES):.2f} CPU-s ({found.scrapes} x {each(SCRAPES)})",
        ),
        Row(
            "steady",
            store,
            n,
            "per 5 min: prune (hourly: 1/12 of one run, measured alone)",
            f"{prune_5m:.2f} CPU-s ({found.prune_cpu:.2f} a run)",
        ),
    ]
    if calls[LEASES]:
        rows.append(
            Row(
                "steady",
                store,
                n,
                "per 5 min: lease rounds",
                f"{per5(LEASES):.2f} CPU-s ({calls[LEASES]} x {each(LEASES)})",
            )
        )
    rows.append(
        Row(
            "steady",
            store,
            n,
            f"per 5 min: total, share of one core ({age_text})",
            f"{total_5m:.1f} CPU-s = {100 * share:.0f} %",
            f"<= {100 * CORE_SHARE_TARGET:.0f} %",
            "PASS" if share <= CORE_SHARE_TARGET else "FAIL",
        )
    )
    if store == "postgresql":
        db_5m = found.database_cpu * scale
        rows.append(
            Row(
                "steady",
                store,
                n,
                "database server per 5 min, apart (window; prune run)",
                f"{db_5m:.1f} CPU-s = {100 * db_5m / REAL_INTERVAL_SECONDS:.0f} % "
                f"({found.prune_database_cpu:.2f} a prune; "
                + ", ".join(f"{k} {v * scale:.1f}" for k, v in found.database_split.items())
                + ")",
            )
        )
    return rows


# --------------------------------------------------------------------- table

PARTS: dict[str, Part] = {"bursts": burst_rows, "steady": steady_rows}
"""Name -> part; each returns its rows. Other parts add themselves here."""


def print_table(rows: list[Row]) -> None:
    print(f"capacity (fake forums, {POSTS_PER_DAY} posts a day x {HISTORY_DAYS} days each)")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


def run(
    *,
    sizes: tuple[int, ...],
    stores: tuple[str, ...],
    parts: tuple[str, ...],
    repeats: int = 1,
    profile: bool = False,
    full: bool = False,
    limit: int | None = None,
    steady_window: float = STEADY_WINDOW,
    steady_age: str = "young",
) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="capacity-"))
    context = Context(
        sizes=sizes,
        stores=stores,
        workdir=workdir,
        repeats=repeats,
        profile=profile,
        full=full,
        limit=limit,
        steady_window=steady_window,
        steady_age=steady_age,
    )
    try:
        if "postgresql" in stores:
            reason = unavailable()
            if reason is not None:
                print(f"{reason}: measuring SQLite only", file=sys.stderr)
                context.stores = tuple(s for s in stores if s != "postgresql")
            else:
                context.postgres = PgCluster(
                    settings={"max_connections": "200"}, prefix="capacity-pg-"
                )
                context.postgres.start()
        rows: list[Row] = []
        for name in parts:
            rows += PARTS[name](context)
        return rows
    finally:
        if context.postgres is not None:
            context.postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def capacity_rows(argv: list[str] | None = None) -> list[Row]:
    """Run the parts ``argv`` names (``main``'s flags); None: ``python -m bench capacity``'s
    default, N = 10 and 100 (10, 100 and 1,000 with ``FORUM_MONITOR_BENCH_FULL=1``)."""
    if argv is None:
        full = os.environ.get("FORUM_MONITOR_BENCH_FULL") == "1"
        argv = ["--full"] if full else []
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--full", action="store_true", help="N = 10, 100 and 1,000")
    parser.add_argument("--sizes", help="comma-separated community counts, e.g. 500")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--repeats", type=int, default=1, help="alternations of each pair")
    parser.add_argument("--py-spy", action="store_true", help="profile serve's first round")
    parser.add_argument("--max-concurrent-polls", type=int, help="default: the config's")
    parser.add_argument(
        "--steady-window",
        type=float,
        default=STEADY_WINDOW,
        help=f"seconds of steady state measured (default {STEADY_WINDOW:g}: one cycle)",
    )
    parser.add_argument(
        "--steady-store",
        choices=STORE_AGES,
        default="young",
        help="the steady part's store: filled by a first round (30 days), or a year",
    )
    args = parser.parse_args(argv)
    sizes = FULL_SIZES if args.full else DEFAULT_SIZES
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    return run(
        sizes=sizes,
        stores=tuple(args.stores.split(",")),
        parts=tuple(args.parts.split(",")),
        repeats=args.repeats,
        profile=args.py_spy,
        full=args.full,
        limit=args.max_concurrent_polls,
        steady_window=args.steady_window,
        steady_age=args.steady_store,
    )


def main(argv: list[str] | None = None) -> bool:
    rows = capacity_rows(argv)
    print_table(rows)
    return all(row.verdict != "FAIL" for row in rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fakes"]:
        run_fakes(int(sys.argv[2]), seed=int(sys.argv[3]), speed=float(sys.argv[4]))
        raise SystemExit(0)
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
