"""The running service: store, HTTP client, poller and the APScheduler jobs, wired once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from monitor.admission import PollQueue
from monitor.analysis.plan import AnalysisPlan
from monitor.analysis.snapshot import Snapshots
from monitor.config import CommunityBase, Settings
from monitor.errors import PseudonymKeyError
from monitor.exporter import CommunityCollector
from monitor.filemodes import warn_if_open
from monitor.http import HttpPolicy, PoliteClient
from monitor.ingest import Ingestor, polled_communities
from monitor.poller import Poller, PollOutcome, brief, source_of
from monitor.privacy import key_file, key_fingerprint, load_or_create_key
from monitor.replicas import Replicas
from monitor.sources import SOURCES, author_namespace
from monitor.store import db, keys, retention
from monitor.store.changes import data_versions
from monitor.store.models import PollState
from monitor.telemetry import Telemetry

log = logging.getLogger(__name__)

ANALYSIS_TICK_SECONDS = 10
"""How often the analysis job looks for snapshots that are due (``monitor.analysis.plan``);
a tick with nothing due reads one row per community."""
FLOWS_REFRESH_SECONDS = 15
"""After a poll brings new posts, its namespace's participant flows are recomputed at most
this often,"""
FLOWS_COST_RATIO = 20
"""and at most once per this many times their last computation's wall time (a namespace
whose flows take 2 s waits 40 s), so flows after polls keep under 1/20 of the time of the
process and of the database, whatever a namespace's size; never less often than
``FLOWS_ALL_SECONDS``."""
FLOWS_ALL_SECONDS = 300
"""Every namespace's participant flows are recomputed this often (their windows slide)."""
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


def host_of(community: CommunityBase, settings: Settings) -> str:
    """The host a poll of ``community`` talks to: polls share their slots by it."""
    adapter = SOURCES.get(source_of(community))
    if adapter is None:
        return ""
    return adapter.host_for(community, settings)


def connection_limit(settings: Settings) -> int:
    """Connections the HTTP client may hold: every admitted poll with as many requests in
    flight as its source kind sends at once (8 for Hacker News' whole site, else 1)."""
    widest = max(
        (
            adapter.concurrent_requests
            for community in settings.communities
            if community.enabled and (adapter := SOURCES.get(source_of(community))) is not None
        ),
        default=1,
    )
    return settings.max_concurrent_polls * widest


def slot_in_interval(community_id: str, interval: float) -> float:
    """Where in each ``interval`` (seconds after a multiple of it, in Unix time) the polls of
    a community fall: a fixed hash of its id, so every start puts it at the same place
    and a thousand communities are spread over the interval, not due at once."""
    digest = hashlib.sha256(community_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def first_run_at(community: CommunityBase, *, now: float, polled_before: bool) -> float:
    """When a community's first poll after a start is due: at once if it was never polled
    (its history is awaited), else at its next slot (``slot_in_interval``)."""
    if not polled_before:
        return now
    interval = community.interval
    return now + (slot_in_interval(community.id, interval) - now) % interval


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
        self.replicas: Replicas | None = None
        """This replica's share of the communities, from ``schedule`` on (``poll-once`` and
        the tests that poll by hand poll every community)."""
        self.migrated = False
        self.polls: PollQueue | None = None
        self._followups: set[asyncio.Task[None]] = set()
        self._flows_at: dict[str, float] = {}
        """When each namespace's participant flows were last computed (service clock)."""
        self._flows_all_at = -math.inf
        self._flows_stale: set[str] = set()
        """Namespaces with new posts since their flows were last computed."""
        self._flows_running: set[str] = set()
        """Namespaces whose flows are being computed now (one query at a time each)."""
        self._flows_cost: dict[str, float] = {}
        """Wall seconds of each namespace's last flows computation."""
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
            max_connections=connection_limit(self.settings),
        )
        self.ingestor = Ingestor(settings=self.settings, key=key)
        self.poller = Poller(
            settings=self.settings,
            engine=self.engine,
            client=self.client,
            telemetry=self.telemetry,
            ingestor=self.ingestor,
            clock=self._clock,
            may_commit=self.may_poll,
        )
        self.polls = PollQueue(
            limit=self.settings.max_concurrent_polls,
            run=self._run_poll,
            host_of=lambda community: host_of(community, self.settings),
            telemetry=self.telemetry,
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

    def may_poll(self, community_id: str) -> bool:
        """Whether this replica polls ``community_id`` now (it holds its lease)."""
        return self.replicas is None or self.replicas.may_poll(community_id)

    def _restore_health(self, only: frozenset[str] | None = None) -> None:
        """Carry the last poll outcomes over a restart (or from the replica that polled a
        community before this one: ``only`` those), so staleness rules see real ages."""
        assert self.engine is not None
        active = {community.id for community in self.active_communities()}
        if only is not None:
            active &= only
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

    async def refresh_flows(self, namespace: str | None = None) -> None:
        """Recompute participant flows: of every namespace, or of ``namespace`` only."""
        if self.snapshots is None:
            return
        namespaces = {c.id: author_namespace(c) for c in self.active_communities()}
        if namespace is not None:
            namespaces = {c: n for c, n in namespaces.items() if n == namespace}
        names = {name for name in namespaces.values() if name is not None}
        if namespace is not None and namespace in self._flows_running:
            return  # polls ending together start one computation; the flag asks for the next
        self._flows_running |= names
        self._flows_stale -= names  # posts written from now on ask for the next one
        now = int(self._clock())
        began = time.monotonic()
        try:
            await asyncio.to_thread(self.snapshots.refresh_flows, namespaces=namespaces, now=now)
        except SQLAlchemyError as exc:
            log.error("participant flows failed: %s", brief(exc))
            self._flows_stale |= names
            return
        finally:
            self._flows_running -= names
        cost = time.monotonic() - began
        for name in names:
            self._flows_at[name] = self._clock()
            self._flows_cost[name] = cost

    async def _refresh_flows_after_poll(self, community: CommunityBase, *, new: bool) -> None:
        """New posts move flows: recompute the community's namespace once they came, at most
        every ``FLOWS_REFRESH_SECONDS`` and ``FLOWS_COST_RATIO`` times its last cost (a
        later poll of the namespace, or the analysis run, catches up)."""
        namespace = author_namespace(community)
        if namespace is None:
            return
        if new:
            self._flows_stale.add(namespace)
        gap = min(
            max(FLOWS_REFRESH_SECONDS, FLOWS_COST_RATIO * self._flows_cost.get(namespace, 0.0)),
            FLOWS_ALL_SECONDS,
        )
        due = self._clock() - self._flows_at.get(namespace, -math.inf) >= gap
        if namespace in self._flows_stale and due:
            await self.refresh_flows(namespace)

    async def analyse(self) -> None:
        """The scheduler's analysis job: recompute the snapshots that are due, most stale
        first (``monitor.analysis.plan``); every namespace's participant flows before them
        every ``FLOWS_ALL_SECONDS``."""
        if self.snapshots is None or self.engine is None:
            return
        if self._clock() - self._flows_all_at >= FLOWS_ALL_SECONDS:
            self._flows_all_at = self._clock()
            await self.refresh_flows()
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
        community's runs in a transaction of their own so that polls write in between;
        settle closed days' term counts and drop expired ones (``terms.retention_days``)."""
        assert self.engine is not None
        engine = self.engine
        now = int(self._clock())

        def history() -> int:
            with Session(engine) as session:
                stored = retention.stored_communities(session)
            dropped = 0
            for community_id in stored:
                with db.write_scope(engine) as session:
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
        await self.settle_terms()

    async def settle_terms(self) -> None:
        """Fold closed days' term uses into their counts and drop expired counts."""
        assert self.engine is not None
        engine = self.engine

        def run() -> int:
            with db.write_scope(engine) as session:
                _, expired = retention.settle_terms(
                    session, settings=self.settings, now=int(self._clock())
                )
            return expired

        try:
            expired = await asyncio.to_thread(run)
        except SQLAlchemyError as exc:
            log.error("settling term counts failed: %s", brief(exc))
            return
        if expired:
            log.info("retention: dropped %d expired term counts", expired)

    async def expire_bodies(self) -> bool:
        """Drop the kept bodies whose retention ended; False when the store failed."""
        assert self.engine is not None
        engine = self.engine

        def run() -> int:
            with db.write_scope(engine) as session:
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
        """Poll every enabled community once, through the admission queue."""
        return list(await asyncio.gather(*(self.poll(c) for c in self.active_communities())))

    async def poll(self, community: CommunityBase) -> PollOutcome:
        """One poll, admitted through the queue (``monitor.admission``): waits for a slot,
        then polls; "deferred" at once if the community's poll is running now."""
        assert self.polls is not None, "open() first"
        # shielded: a caller that stops waiting (the scheduler shutting down) does not
        # cancel the poll; stop() gives a poll in flight its grace period
        return await asyncio.shield(self.polls.submit(community))

    async def _run_poll(self, community: CommunityBase) -> PollOutcome:
        """The admitted poll, then the community's analysis if it succeeded."""
        assert self.poller is not None
        if not self.may_poll(community.id):  # its lease went while the poll waited
            return PollOutcome(community.id, source_of(community), "lease_lost")
        try:
            outcome = await self.poller.poll(community)
        except asyncio.CancelledError:
            log.info("poll of %s stopped by shutdown; nothing of it was written", community.id)
            raise
        if outcome.outcome in ("ok", "not_modified"):
            await self._refresh_flows_after_poll(community, new=bool(outcome.new_items))
        if outcome.outcome not in ("deferred", "cancelled", "lease_lost"):
            await self.after_poll(community)
        return outcome

    async def _scheduled_poll(self, community: CommunityBase) -> None:
        """The scheduler's job: queue the poll and return at once, so a run that comes
        round while the last one still waits is coalesced by the queue."""
        if not self.may_poll(community.id):
            return  # another replica holds it
        if self.polls is not None:
            self.polls.submit(community)

    def _polled_before(self) -> set[str]:
        if self.engine is None:
            return set()
        try:
            with db.session_scope(self.engine) as session:
                return polled_communities(session)
        except SQLAlchemyError as exc:
            log.error("could not read which communities were polled before: %s", brief(exc))
            return set()

    async def lease_round(self) -> None:
        """Renew and rebalance the leases; a community taken over gets a fresh snapshot and
        the last success the store knows of before its series are exported here."""
        if self.replicas is None:
            return
        try:
            gained = await self.replicas.round()
        except asyncio.CancelledError:
            return  # the scheduler is shutting down; stop() hands the leases back
        if gained and self.polls is not None:
            # polled at once: a community taken over from a replica that died, or held
            # since this one started, may be past its time (the queue coalesces a job's run)
            for community_id in sorted(gained):
                community = self.active_community(community_id)
                if community is not None:
                    self.polls.submit(community)
        if gained:  # in a task of its own: analysis must not delay the next renewal
            task = asyncio.ensure_future(self._taken_over(gained))
            self._followups.add(task)
            task.add_done_callback(self._followups.discard)

    async def _taken_over(self, gained: frozenset[str]) -> None:
        for community_id in sorted(gained):
            community = self.active_community(community_id)
            if community is not None:
                await self.refresh(community)
        if self.snapshots is not None:
            await asyncio.to_thread(self._restore_health, gained)

    async def _scheduled_prune(self) -> None:
        try:
            await self.prune()
        except asyncio.CancelledError:
            return  # the scheduler is shutting down: the next start prunes

    async def _scheduled_analyse(self) -> None:
        try:
            await self.analyse()
        except asyncio.CancelledError:
            return  # the scheduler is shutting down: the next start recomputes what is due

    def share_work(self) -> Replicas:
        """Divide the communities with the other replicas of a shared store (PostgreSQL);
        this process polls, and exports the series of, only the ones it holds."""
        assert self.engine is not None, "open() first"
        replicas = Replicas(
            engine=self.engine,
            communities=self.active_ids(),
            lease_seconds=self.settings.replicas.lease,
            telemetry=self.telemetry,
        )
        self.replicas = replicas
        self.telemetry.health.exported = replicas.exported
        if self.community_collector is not None:
            self.community_collector.exported = replicas.exported
        return replicas

    def schedule(self) -> None:
        """One interval job per community, with jitter; misfires coalesce into one run.

        A community never polled is due at once (the queue works such a burst off
        ``max_concurrent_polls`` at a time); one polled before at its fixed slot of the
        interval (``first_run_at``), so a restart does not make every community due at
        the same moment. On a shared store a lease round runs first and every third of a
        lease; a community's job polls only while this replica holds the community, and a
        community gained in a round is polled at once (``lease_round``).
        """
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        now = self._clock()
        polled = self._polled_before()
        replicas = self.share_work()
        if replicas.renew_every is not None:
            self.scheduler.add_job(
                self.lease_round,
                "interval",
                id="leases",
                seconds=replicas.renew_every,
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(replicas.renew_every)),
            )
        for community in self.active_communities():
            at = first_run_at(community, now=now, polled_before=community.id in polled)
            first = datetime.fromtimestamp(at, UTC)
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
            self._scheduled_analyse,
            "interval",
            id="analysis",
            seconds=ANALYSIS_TICK_SECONDS,
            # the snapshots missing after a start, in the background
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self._scheduled_prune,
            "interval",
            id="prune",
            seconds=PRUNE_INTERVAL_SECONDS,
            # in the background: pruning is not a condition of readiness
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()
        log.info("scheduled %d communities", len(self.active_communities()))

    async def stop(self) -> None:
        """Stop scheduling; give polls in flight a few seconds to finish, then cancel them."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        inflight = set()
        if self.polls is not None:
            self.polls.close()  # polls still waiting never start
            inflight = self.polls.tasks
        if inflight:
            log.info("waiting for %d poll(s) in flight", len(inflight))
            _, pending = await asyncio.wait(inflight, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for followup in set(self._followups):
            followup.cancel()
        if self.replicas is not None:
            await self.replicas.release()  # the others take over at their next round
        if self.client is not None:
            await self.client.aclose()
        if self.engine is not None:
            self.engine.dispose()
