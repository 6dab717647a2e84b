"""One poll of one community: adapter -> ingest, with failures counted and logged once.

A poll either commits its items and the new cursor together or records a
failure and leaves the cursor where the last success put it; every failure,
a failed database write included, becomes the community's last error. Database
work runs in a worker thread so the event loop (and /metrics) stays responsive.

The write transaction holds no scoring and no network wait: the batch is fetched
first, then prepared (pseudonyms, hashes, sentiment and keyword groups; a worker
thread, no transaction), and only then written: upserts, the rollups of the days
it touched and the cursor, in one transaction (``db.write_scope``). On SQLite the
service's writes take turns (one ``asyncio.Lock``), so a write never waits for
another in a worker thread nor meets SQLite's lock.

A poll with an empty cursor (a first poll, or one after ``backfill`` filled the
store) starts from the newest post the store already holds for the community,
less ``RESUME_OVERLAP_SECONDS``, rather than from ``history_days`` back: what a
backfill fetched is not downloaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from monitor.analysis.rollups import refresh_days
from monitor.config import CommunityBase, Settings
from monitor.errors import RateLimited, SourceError, UnknownSource
from monitor.http import MAX_SERVER_WAIT, PoliteClient, server_wait
from monitor.ingest import (
    Ingestor,
    IngestResult,
    Prepared,
    StalePreparation,
    ensure_community,
    load_poll_state,
    record_failure,
)
from monitor.sources import SOURCES
from monitor.sources.base import Batch, Rejection, Source
from monitor.store.db import session_scope, write_retrying_conflicts
from monitor.store.models import Community, PollState, Post
from monitor.telemetry import Telemetry
from monitor.untrusted import for_log

log = logging.getLogger(__name__)
T = TypeVar("T")

REMEMBERED_REJECTIONS = 10_000
"""Rejected items (community, reason, id) remembered so each is counted and logged once."""
MAX_MESSAGE_LENGTH = 500
"""Characters of a failure's message that its log line and the status page show at most."""
RESUME_OVERLAP_SECONDS = 3600
"""How far before the newest stored post a poll with an empty cursor starts reading."""
MAX_PREPARATIONS = 3
"""Times a batch is prepared again when another writer changed its posts meanwhile;
then it is scored inside the transaction rather than fail."""


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did; ``outcome`` is "ok", "not_modified", "deferred", "lease_lost" (another
    replica holds the community now) or a failure reason."""

    community: str
    source: str
    outcome: str
    new_items: int = 0
    updated_items: int = 0
    requests: int = 0
    duration_seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def one_line(message: str) -> str:
    """``message`` as it is when it is one printable line of a sane length (errors quote
    remote strings through ``for_log`` as they are built), else escaped and cut: an error
    that quoted a server's words raw still cannot forge a log line or bloat the status
    page."""
    if message.isprintable() and len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return for_log(message, limit=MAX_MESSAGE_LENGTH)


def brief(exc: SQLAlchemyError) -> str:
    """The driver's first line, without the SQL parameters (they may hold post text)."""
    original = getattr(exc, "orig", None)
    text = str(original) if original is not None else exc.__class__.__name__
    return text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__


def source_of(community: CommunityBase) -> str:
    return str(getattr(community, "source", "unknown"))


def adapter_for(community: CommunityBase) -> type[Source]:
    """The adapter class of the community's source kind; UnknownSource if none."""
    adapter_class = SOURCES.get(source_of(community))
    if adapter_class is None:
        raise UnknownSource(
            f"no adapter for source kind {source_of(community)!r}", community=community.id
        )
    return adapter_class


def failure_of(exc: Exception, *, what: str, community: str) -> tuple[str, str]:
    """The (reason, one-line message) of a failed poll or backfill, called in its ``except``.

    Source errors are expected and carry both; a store error is logged without its
    SQL; anything else is a bug, logged with its traceback.
    """
    if isinstance(exc, SourceError):
        return exc.reason, one_line(str(exc))
    if isinstance(exc, SQLAlchemyError):
        log.error("%s of %s could not write to the database: %s", what, community, brief(exc))
        return "store", f"database error: {brief(exc)[:200]}"
    log.exception("%s of %s failed unexpectedly", what, community)
    return "internal", f"internal error ({exc.__class__.__name__})"


class Poller:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        client: PoliteClient,
        telemetry: Telemetry,
        ingestor: Ingestor,
        clock: Callable[[], float] = time.time,
        may_commit: Callable[[str], bool] = lambda community: True,
    ) -> None:
        self._settings = settings
        self._may_commit = may_commit
        """Whether a poll's result may still be written: a replica that lost the
        community's lease meanwhile leaves it to the new holder (``monitor.replicas``)."""
        self._engine = engine
        self._client = client
        self._telemetry = telemetry
        self._ingestor = ingestor
        self._clock = clock
        self._failing: dict[str, str] = {}
        self._rejected: OrderedDict[tuple[str, str, str | None], None] = OrderedDict()
        self._turns = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @contextlib.asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        """On SQLite, this service's write transactions one at a time (``_turns``), so a
        waiting write holds no worker thread; elsewhere, no waiting."""
        if self._turns is None:
            yield
            return
        async with self._turns:
            yield

    async def _writing(self, work: Callable[[], T]) -> T:
        """``work`` (a write transaction) in a worker thread, in its turn."""
        async with self._writer_turn():
            return await asyncio.to_thread(work)

    def _ensure_community(self, community: CommunityBase) -> None:
        """Its row, once (another replica may be inserting it at the same moment)."""

        def write(session: Session) -> None:
            ensure_community(session, community=community, now=int(self._clock()))

        write_retrying_conflicts(self._engine, write)

    def _load(self, community: CommunityBase) -> tuple[dict[str, object], dict[str, object], int]:
        """The cursor, the validators and the time before which the host asked not to be
        polled: at most ``MAX_SERVER_WAIT`` after the poll that was told so, whatever an
        older release stored."""

        with session_scope(self._engine) as session:  # a read
            now = int(self._clock())
            cursor, validators = load_poll_state(session, community.id)
            state = session.get(PollState, community.id)
            if state is None or state.not_before is None:
                return cursor, validators, 0
            told_at = state.last_attempt_at if state.last_attempt_at is not None else now
            return cursor, validators, min(state.not_before, told_at + int(MAX_SERVER_WAIT))

    def _resume_from(self, community: CommunityBase) -> int | None:
        """Where a poll with an empty cursor starts: just before the newest stored post."""
        with session_scope(self._engine) as session:
            newest = session.exec(
                select(func.max(Post.created_at)).where(Post.community_id == community.id)
            ).one()
        if newest is None:
            return None
        return min(int(newest), int(self._clock())) - RESUME_OVERLAP_SECONDS

    def _is_known(self, community: CommunityBase) -> bool:
        with session_scope(self._engine) as session:
            return session.get(Community, community.id) is not None

    def _prepare(
        self, community: CommunityBase, batch: Batch, known: dict[str, str] | None = None
    ) -> Prepared:
        """The batch's pseudonyms, hashes and scores, outside any write transaction."""
        if known is None:
            with session_scope(self._engine) as session:  # a read: no write lock taken
                known = self._ingestor.known_hashes(session, community_id=community.id, batch=batch)
        return self._ingestor.prepare(community=community, batch=batch, known=known)

    def _commit(
        self, community: CommunityBase, batch: Batch, started: int, prepared: Prepared | None
    ) -> IngestResult:
        """The write transaction: items, the rollups of the days they touched, the cursor
        (tried again when a concurrent writer stored the same new rows first)."""

        def write(session: Session) -> IngestResult:
            now = int(self._clock())
            result = self._ingestor.ingest(
                session,
                community=community,
                batch=batch,
                started_at=started,
                now=now,
                prepared=prepared,
            )
            refresh_days(session, community_id=community.id, days=result.touched_days, now=now)
            return result

        return write_retrying_conflicts(self._engine, write)

    async def _write(self, community: CommunityBase, batch: Batch, started: int) -> IngestResult:
        prepared: Prepared | None = await asyncio.to_thread(self._prepare, community, batch)
        for attempt in range(1, MAX_PREPARATIONS + 1):
            commit = functools.partial(self._commit, community, batch, started, prepared)
            try:
                return await self._writing(commit)
            except StalePreparation as stale:  # another writer changed a post meanwhile
                if attempt < MAX_PREPARATIONS:
                    prepared = await asyncio.to_thread(self._prepare, community, batch, stale.known)
        # scored in the transaction rather than fail
        return await self._writing(functools.partial(self._commit, community, batch, started, None))

    def _write_failure(
        self,
        community: CommunityBase,
        *,
        reason: str,
        message: str,
        started: int,
        requests: int,
        not_before: int | None,
    ) -> None:
        def write(session: Session) -> None:
            record_failure(
                session,
                community=community,
                reason=reason,
                message=message,
                started_at=started,
                now=int(self._clock()),
                requests=requests,
                not_before=not_before,
            )

        write_retrying_conflicts(self._engine, write)

    async def poll(self, community: CommunityBase) -> PollOutcome:
        """Poll ``community`` once; never raises except on cancellation."""
        source = source_of(community)
        started_wall = self._clock()
        started = int(started_wall)
        requests = 0
        try:
            adapter_class = adapter_for(community)
            if not await asyncio.to_thread(self._is_known, community):
                await self._writing(lambda: self._ensure_community(community))
            cursor, validators, not_before = await asyncio.to_thread(self._load, community)
            if not_before > started:
                return PollOutcome(community.id, source, "deferred")
            self._telemetry.polls.labels(community=community.id, source=source).inc()
            resume_from = None if cursor else await asyncio.to_thread(self._resume_from, community)
            adapter = adapter_class(community, settings=self._settings, client=self._client)
            try:
                batch = await adapter.poll(
                    cursor=cursor, validators=validators, now=started, resume_from=resume_from
                )
            finally:
                requests = adapter.counter.requests
                self._count_rejections(community, adapter.intake.rejected)
            if not self._may_commit(community.id):
                log.info("%s: its lease ran out during the poll; nothing written", community.id)
                return PollOutcome(community.id, source, "lease_lost", requests=requests)
            result = await self._write(community, batch, started)
        except Exception as exc:  # a bug is logged too; the other communities go on
            reason, message = failure_of(exc, what="poll", community=community.id)
            not_before = None
            if isinstance(exc, RateLimited):
                not_before = int(self._clock() + server_wait(exc.retry_after))
            return await self._failed(
                community, reason, message, started, requests, not_before, started_wall
            )
        duration = self._clock() - started_wall
        self._succeeded(community, result, duration)
        return PollOutcome(
            community.id,
            source,
            "not_modified" if batch.not_modified else "ok",
            new_items=result.new_items,
            updated_items=result.updated_items,
            requests=batch.requests,
            duration_seconds=round(duration, 3),
        )

    def _count_rejections(self, community: CommunityBase, rejected: list[Rejection]) -> None:
        """Count and log each rejected item once, however many polls see it again."""
        for reason, ident in rejected:
            key = (community.id, reason, ident)
            if ident is not None:
                if key in self._rejected:
                    self._rejected.move_to_end(key)
                    continue
                self._rejected[key] = None
                while len(self._rejected) > REMEMBERED_REJECTIONS:
                    self._rejected.popitem(last=False)
            self._telemetry.items_rejected.labels(
                community=community.id, source=source_of(community), reason=reason
            ).inc()
            log.warning("%s: rejected an item (%s), id %s", community.id, reason, for_log(ident))

    def _succeeded(self, community: CommunityBase, result: IngestResult, duration: float) -> None:
        source = source_of(community)
        self._telemetry.poll_duration.labels(community=community.id, source=source).observe(
            duration
        )
        self._telemetry.last_success.labels(community=community.id).set(self._clock())
        self._telemetry.source_up.labels(community=community.id).set(1)
        for kind, count in result.new_by_kind.items():
            self._telemetry.items_ingested.labels(
                community=community.id, source=source, kind=kind
            ).inc(count)
        if self._failing.pop(community.id, None) is not None:
            log.info("polls of %s recovered", community.id)

    async def _failed(
        self,
        community: CommunityBase,
        reason: str,
        message: str,
        started: int,
        requests: int,
        not_before: int | None,
        started_wall: float,
    ) -> PollOutcome:
        source = source_of(community)
        duration = self._clock() - started_wall
        self._telemetry.poll_failures.labels(
            community=community.id, source=source, reason=reason
        ).inc()
        self._telemetry.poll_duration.labels(community=community.id, source=source).observe(
            duration
        )
        self._telemetry.source_up.labels(community=community.id).set(0)
        if self._failing.get(community.id) != reason:
            log.warning("polls of %s failing: %s (%s)", community.id, message, reason)
        self._failing[community.id] = reason
        try:  # a failed write is recorded too, in a transaction of its own
            await self._writing(
                lambda: self._write_failure(
                    community,
                    reason=reason,
                    message=message,
                    started=started,
                    requests=requests,
                    not_before=not_before,
                )
            )
        except SQLAlchemyError as exc:  # the database itself is unusable
            log.error("could not record the failed poll of %s: %s", community.id, brief(exc))
        return PollOutcome(
            community.id,
            source,
            reason,
            requests=requests,
            duration_seconds=round(duration, 3),
            error=message,
        )
