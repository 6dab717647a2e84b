"""The running service: store, HTTP client, poller and the APScheduler jobs, wired once."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from monitor.analysis.plan import AnalysisPlan
from monitor.analysis.snapshot import Snapshots
from monitor.config import CommunityBase, Settings
from monitor.errors import PseudonymKeyError
from monitor.exporter import CommunityCollector
from monitor.filemodes import warn_if_open
from monitor.http import HttpPolicy, PoliteClient
from monitor.ingest import Ingestor
from monitor.poller import Poller, PollOutcome, brief, source_of
from monitor.privacy import key_file, key_fingerprint, load_or_create_key
from monitor.store import db, keys, retention
from monitor.store.changes import data_versions
from monitor.store.models import PollState
from monitor.telemetry import Telemetry

log = logging.getLogger(__name__)

ANALYSIS_TICK_SECONDS = 10
"""How often the analysis job looks for snapshots that are due (``monitor.analysis.plan``);
a tick with nothing due reads one row per community."""
PRUNE_INTERVAL_SECONDS = 3600
SHUTDOWN_GRACE_SECONDS = 6.0
"""How long a poll in flight may take to commit or roll back when the service stops."""


def http_policy(settings: Settings) -> HttpPolicy:
    http = settings.http
    return HttpPolicy(
        connect_timeout=http.connect_timeout,
        read_timeout=http.read_timeout,
        total_timeout=http.total_timeout,
        max_body_bytes=http.max_body_bytes,
        max_retries=http.max_retries,
        backoff_base=http.backoff_base,
        max_retry_wait=http.max_retry_wait,
        contact=settings.contact,
    )


def open_store(settings: Settings) -> Engine:
    """Connect to the configured database and bring its schema to the newest migration."""
    engine = db.make_engine(settings.resolved_database_url())
    db.upgrade(engine)
    return engine


class Service:
    """Everything ``serve`` and ``poll-once`` run; ``start``/``stop`` inside an event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        accept_new_key: bool = False,
    ) -> None:
        self.settings = settings
        self.accept_new_key = accept_new_key
        self.registry = registry if registry is not None else CollectorRegistry()
        self.telemetry = Telemetry(self.registry)
        self._transport = transport
        self._clock = clock
        self.engine: Engine | None = None
        self.client: PoliteClient | None = None
        self.ingestor: Ingestor | None = None
        self.poller: Poller | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.snapshots: Snapshots | None = None
        self.plan = AnalysisPlan()
        self.community_collector: CommunityCollector | None = None
        self.key: bytes | None = None
        self.key_state: keys.KeyState | None = None
        self.migrated = False
        self._inflight: set[asyncio.Task[PollOutcome]] = set()
        self._running: set[str] = set()
        self._active = {c.id: c for c in settings.communities if c.enabled}
        self._active_ids = sorted(self._active)

    @property
    def ready(self) -> bool:
        return self.migrated and self.scheduler is not None and self.scheduler.running

    def analysis_pending(self, community_id: str) -> bool:
        """Whether the community has no snapshot yet but its analysis is still to come."""
        if self.snapshots is None or self.scheduler is None or not self.scheduler.running:
            return False
        missing = self.snapshots.get(community_id) is None
        return missing and not self.plan.has_failed(community_id)

    @property
    def authors_counted_anew_since(self) -> int | None:
        """When a new pseudonym key was accepted (every author counted anew), if ever."""
        return self.key_state.counted_anew_since if self.key_state else None

    def prepare(self) -> None:
        """Open the store (migrated) and check the pseudonym key against it; any failure
        is a ``ForumMonitorError``. ``serve`` calls this before it listens, so a store or
        key it cannot use stops it before anything answers."""
        if self.engine is not None:
            return
        engine = open_store(self.settings)
        try:
            self.key, self.key_state = self._checked_key(engine)
        except BaseException:
            engine.dispose()
            raise
        self.engine = engine
        self.migrated = True

    def _checked_key(self, engine: Engine) -> tuple[bytes, keys.KeyState]:
        configured = self.settings.pseudonym_key
        data_dir = Path(self.settings.data_dir)
        path = key_file(data_dir)
        stored = keys.current_fingerprint(engine)
        warn_if_open(data_dir, what="data_dir", private_mode=0o700)
        if configured:
            origin = "the pseudonym_key it was written with (config or FORUM_MONITOR_PSEUDONYM_KEY)"
        else:
            origin = str(path)
            if stored is not None and not self.accept_new_key and not path.exists():
                raise PseudonymKeyError(
                    f"the pseudonym key file {path} is missing, but this store was written "
                    f"with a key (fingerprint {keys.short(stored)}): restore {path}, or start "
                    "once with --accept-new-key to count every author anew from now",
                    path=str(path),
                )
        key = load_or_create_key(configured=configured, data_dir=data_dir)
        state = keys.check_key(
            engine,
            fingerprint=key_fingerprint(key),
            accept_new=self.accept_new_key,
            now=int(self._clock()),
            key_origin=origin,
        )
        return key, state

    @property
    def is_open(self) -> bool:
        return self.poller is not None

    async def open(self) -> None:
        """Store, key, client and poller; no scheduling yet (``poll-once`` stops here)."""
        await asyncio.to_thread(self.prepare)
        assert self.engine is not None and self.key is not None
        key = self.key
        self.client = PoliteClient(
            policy=http_policy(self.settings),
            telemetry=self.telemetry,
            transport=self._transport,
        )
        self.ingestor = Ingestor(settings=self.settings, key=key)
        self.poller = Poller(
            settings=self.settings,
            engine=self.engine,
            client=self.client,
            telemetry=self.telemetry,
            ingestor=self.ingestor,
            clock=self._clock,
        )
        self.use_snapshots(Snapshots(settings=self.settings, engine=self.engine))
        for community in self.active_communities():
            self.telemetry.declare_community(
                community.id, source_of(community), interval=community.interval
            )
        await self.expire_bodies()  # the poll history is pruned by the scheduled job
        await asyncio.to_thread(self._restore_health)
        # no analysis here: the scheduler's analysis job computes the snapshots in the
        # background, so serving does not wait for communities x history

    def use_snapshots(self, snapshots: Snapshots) -> None:
        """Serve ``snapshots``: the status page and API read them, /metrics exports them."""
        self.snapshots = snapshots
        self.community_collector = CommunityCollector(snapshots)
        self.registry.register(self.community_collector)

    def exposition(self) -> bytes:
        """The /metrics text: what ``generate_latest(self.registry)`` writes, from parts
        rendered when they change rather than at every scrape (``monitor.exposition``)."""
        body = self.telemetry.exposition()
        if self.community_collector is not None:
            body += self.community_collector.exposition()
        return body

    def _restore_health(self) -> None:
        """Carry the last poll outcomes over a restart, so staleness rules see real ages."""
        assert self.engine is not None
        active = {community.id for community in self.active_communities()}
        try:
            with Session(self.engine) as session:
                states = [s for s in session.exec(select(PollState)) if s.community_id in active]
        except SQLAlchemyError as exc:
            log.error("reading the last poll outcomes failed: %s", brief(exc))
            return
        for state in states:
            if state.last_success_at is not None:
                self.telemetry.last_success.labels(community=state.community_id).set(
                    state.last_success_at
                )
                up = 1 if state.last_error is None else 0
                self.telemetry.source_up.labels(community=state.community_id).set(up)

    async def refresh_all(self) -> None:
        """Recompute every community's snapshot now, one after another."""
        for community in self.active_communities():
            await self.refresh(community)

    async def analyse(self) -> None:
        """The scheduler's analysis job: recompute the snapshots that are due, most stale
        first (``monitor.analysis.plan``)."""
        if self.snapshots is None or self.engine is None:
            return
        snapshots, engine = self.snapshots, self.engine

        def due() -> list[CommunityBase]:
            with Session(engine) as session:
                versions = data_versions(session)
            return self.plan.due(
                self.active_communities(),
                latest=snapshots.get,
                versions=versions,
                now=self._clock(),
            )

        try:
            communities = await asyncio.to_thread(due)
        except SQLAlchemyError as exc:
            log.error("analysis could not read the store: %s", brief(exc))
            return
        for community in communities:
            await self.refresh(community)

    async def refresh(self, community: CommunityBase) -> None:
        """Recompute ``community``'s snapshot now."""
        if self.snapshots is None:
            return
        now = int(self._clock())
        try:
            await asyncio.to_thread(self.snapshots.refresh, community, now=now)
        except SQLAlchemyError as exc:
            self.plan.failed(community.id, now=now)
            log.error("analysis of %s failed: %s", community.id, brief(exc))
        else:
            self.plan.computed(community.id, now=now)

    async def after_poll(self, community: CommunityBase) -> None:
        """Show a poll's outcome: recompute the snapshot when the poll changed the
        community's data (or it has none yet), else carry only its last success or error."""
        if self.snapshots is None:
            return
        latest = self.snapshots.get(community.id)
        try:
            version = await asyncio.to_thread(self.snapshots.refresh_state, community)
        except SQLAlchemyError as exc:
            log.error("analysis of %s failed: %s", community.id, brief(exc))
            return
        if latest is None or version != latest.data_version:
            await self.refresh(community)

    async def prune(self) -> None:
        """Drop expired post bodies (``retention_days``) and old poll history, each
        community's runs in a transaction of their own so that polls write in between."""
        assert self.engine is not None
        engine = self.engine
        now = int(self._clock())

        def history() -> int:
            with Session(engine) as session:
                stored = retention.stored_communities(session)
            dropped = 0
            for community_id in stored:
                with db.session_scope(engine) as session:
                    dropped += retention.prune_poll_history(
                        session, community_id=community_id, now=now
                    )
            return dropped

        if not await self.expire_bodies():
            return
        try:
            runs = await asyncio.to_thread(history)
        except SQLAlchemyError as exc:
            log.error("pruning the poll history failed: %s", brief(exc))
            return
        if runs:
            days = retention.POLL_HISTORY_DAYS
            log.info("retention: dropped %d poll runs older than %d days", runs, days)

    async def expire_bodies(self) -> bool:
        """Drop the kept bodies whose retention ended; False when the store failed."""
        assert self.engine is not None
        engine = self.engine

        def run() -> int:
            with db.session_scope(engine) as session:
                return retention.expire_bodies(session, now=int(self._clock()))

        try:
            bodies = await asyncio.to_thread(run)
            if bodies:
                await asyncio.to_thread(db.truncate_wal, engine)
        except SQLAlchemyError as exc:
            log.error("retention pruning failed: %s", brief(exc))
            return False
        if bodies:
            log.info("retention: dropped %d expired bodies", bodies)
        return True

    def active_communities(self) -> list[CommunityBase]:
        return [c for c in self.settings.communities if c.enabled]

    def active_community(self, community_id: str) -> CommunityBase | None:
        """The enabled community ``community_id``, found without a walk over the others."""
        return self._active.get(community_id)

    def active_ids(self) -> list[str]:
        """Every enabled community's id, sorted."""
        return self._active_ids

    async def poll_all(self) -> list[PollOutcome]:
        """Poll every enabled community once, a few at a time."""
        limit = asyncio.Semaphore(self.settings.max_concurrent_polls)

        async def bounded(community: CommunityBase) -> PollOutcome:
            async with limit:
                return await self.poll(community)

        return list(await asyncio.gather(*(bounded(c) for c in self.active_communities())))

    async def poll(self, community: CommunityBase) -> PollOutcome:
        """One poll, tracked so that ``stop`` can wait for it; skipped if one is running."""
        assert self.poller is not None, "open() first"
        if community.id in self._running:
            return PollOutcome(community.id, source_of(community), "deferred")
        self._running.add(community.id)
        task = asyncio.ensure_future(self.poller.poll(community))
        self._inflight.add(task)

        def finished(done: asyncio.Future[PollOutcome]) -> None:
            self._inflight.discard(task)
            self._running.discard(community.id)

        task.add_done_callback(finished)
        try:
            # shielded: when the scheduler shuts down it cancels this caller, while the
            # poll itself gets stop()'s grace period to commit or roll back
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            log.info("poll of %s stopped by shutdown; nothing of it was written", community.id)
            return PollOutcome(community.id, source_of(community), "cancelled")
        if outcome.outcome not in ("deferred", "cancelled"):
            await self.after_poll(community)
        return outcome

    async def _scheduled_poll(self, community: CommunityBase) -> None:
        try:
            await self.poll(community)
        except asyncio.CancelledError:
            return  # the scheduler is shutting down; stop() looks after the poll in flight

    def schedule(self) -> None:
        """One interval job per community, with jitter; misfires coalesce into one run."""
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        now = datetime.now(UTC)
        for community in self.active_communities():
            first = now + timedelta(seconds=random.uniform(0, min(5.0, community.interval)))
            self.scheduler.add_job(
                self._scheduled_poll,
                "interval",
                args=[community],
                id=f"poll:{community.id}",
                seconds=community.interval,
                jitter=min(community.interval * 0.1, 30.0),
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(community.interval)),
            )
        self.scheduler.add_job(
            self.analyse,
            "interval",
            id="analysis",
            seconds=ANALYSIS_TICK_SECONDS,
            next_run_time=now,  # the snapshots missing after a start, in the background
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.prune,
            "interval",
            id="prune",
            seconds=PRUNE_INTERVAL_SECONDS,
            next_run_time=now,  # in the background: pruning is not a condition of readiness
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()
        log.info("scheduled %d communities", len(self.active_communities()))

    async def stop(self) -> None:
        """Stop scheduling; give polls in flight a few seconds to finish, then cancel them."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._inflight:
            log.info("waiting for %d poll(s) in flight", len(self._inflight))
            _, pending = await asyncio.wait(set(self._inflight), timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        if self.client is not None:
            await self.client.aclose()
        if self.engine is not None:
            self.engine.dispose()
