"""``forum-monitor backfill``: fetch a community's past activity into the store.

A backfill walks a community's source from the newest item back ``days`` days
with a cursor of its own: the service's poll cursor is neither read nor moved,
so a backfill can run beside ``serve`` and the next poll goes on exactly where
it would have. Items go through the same ingest as a poll (pseudonymized,
scored, upserted by community and external id), so what is already stored is
not stored twice. Each step commits its items together with the rollups of the
days they touch: a backfill cut short keeps what it fetched and can simply be
run again.

Adapters bound what one poll fetches. While an adapter says its walk is not
finished (``Source.walk_pending``: Discourse, Hacker News keyword scopes,
Mastodon), the backfill polls again from the cursor the last step left, up to
``MAX_STEPS``. When the walk ends, a ``backfill`` poll run records its coverage
(see ``monitor.analysis.coverage``): from ``days`` back when the walk got that
far (outcome ``ok``), else from the oldest item fetched (outcome ``partial``:
Reddit lists about 1000 items per listing, a feed holds what it holds, the
Hacker News whole-site walk reaches 500 ids back). A failed step records no
coverage.

A server that fabricates endless older pages cannot keep a backfill going: it
stops when a step brings items but none older or newer than the steps before it
(the walk no longer moves in time: back, or forward for an adapter that walks
oldest first, as Stack Exchange's does, which the poll's clock bounds; not checked
for a walk in another order than creation, ``Source.walks_by_creation``, such as
GitHub's by activity), and when it has fetched more than the
requested days can hold (``MAX_POSTS_PER_DAY`` a day, ``STEPS_PER_DAY`` polls a
day); ``stopped`` says which ("reached", "source_end", "no_progress",
"budget"), and coverage then counts only what the walk fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from monitor.analysis.rollups import refresh_days
from monitor.config import CommunityBase, Settings
from monitor.http import PoliteClient
from monitor.ingest import Ingestor, IngestResult, record_backfill
from monitor.poller import PollOutcome, adapter_for, failure_of, source_of
from monitor.sources.base import Batch, Cursor
from monitor.store.db import session_scope

log = logging.getLogger(__name__)

MAX_STEPS = 10_000
"""Polls one backfill may make (a Discourse step fetches up to 1,000 posts)."""
MAX_POSTS_PER_DAY = 10_000
"""More posts a day than the busiest public forums see: a walk past this many per
requested day is a server inventing them."""
STEPS_PER_DAY = 25
"""Polls per requested day a backfill may make (Mastodon reads 400 statuses a poll)."""


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill stands after a step."""

    community: str
    steps: int
    new_items: int
    requests: int
    oldest: int | None
    """Creation time of the oldest item fetched so far (UTC epoch seconds)."""


@dataclass(frozen=True)
class BackfillOutcome(PollOutcome):
    """What a backfill did; ``outcome`` is "ok", "partial" or a failure reason."""

    steps: int = 0
    """Polls it made (adapters bound what one poll fetches)."""
    covered_from: int | None = None
    """Start of the span the backfill recorded as complete (UTC epoch seconds)."""
    stopped: str | None = None
    """Why the walk ended: "reached" (``days`` back), "source_end" (the source lists
    nothing older), "no_progress" (steps stopped going back in time) or "budget"
    (more than ``days`` can hold); None when it failed."""


ProgressCallback = Callable[[BackfillProgress], None]


@dataclass
class _Tally:
    steps: int = 0
    new_items: int = 0
    updated_items: int = 0
    requests: int = 0
    fetched: int = 0
    oldest: int | None = None
    newest: int | None = None
    moved: bool = True
    """Whether the last step brought something older or newer than the steps before it
    (or nothing): a walk back in time, or forward from its start."""

    def add(self, batch: Batch, result: IngestResult) -> None:
        self.steps += 1
        self.new_items += result.new_items
        self.updated_items += result.updated_items
        self.fetched += len(batch.envelopes)
        times = [envelope.item.created_at for envelope in batch.envelopes]
        self.moved = (
            not times
            or self.oldest is None
            or self.newest is None
            or min(times) < self.oldest
            or max(times) > self.newest
        )
        if times:
            self.oldest = min(times) if self.oldest is None else min(self.oldest, *times)
            self.newest = max(times) if self.newest is None else max(self.newest, *times)

    def progress(self, community: str) -> BackfillProgress:
        return BackfillProgress(community, self.steps, self.new_items, self.requests, self.oldest)


class Backfiller:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        client: PoliteClient,
        ingestor: Ingestor,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._client = client
        self._ingestor = ingestor
        self._clock = clock

    async def run(
        self,
        community: CommunityBase,
        *,
        days: int,
        on_progress: ProgressCallback | None = None,
    ) -> BackfillOutcome:
        """Backfill ``days`` of ``community``; never raises except on cancellation."""
        source = source_of(community)
        tally = _Tally()
        started = self._clock()

        def outcome(
            kind: str,
            *,
            covered_from: int | None = None,
            error: str | None = None,
            stopped: str | None = None,
        ) -> BackfillOutcome:
            return BackfillOutcome(
                community.id,
                source,
                kind,
                new_items=tally.new_items,
                updated_items=tally.updated_items,
                requests=tally.requests,
                duration_seconds=round(self._clock() - started, 3),
                error=error,
                steps=tally.steps,
                covered_from=covered_from,
                stopped=stopped,
            )

        try:
            covered_from, stopped = await self._walk(community, days, tally, on_progress)
        except Exception as exc:  # a bug is logged too; the outcome says it in one line
            reason, message = failure_of(exc, what="backfill", community=community.id)
            return outcome(reason, error=message)
        kind = "ok" if stopped == "reached" else "partial"
        return outcome(kind, covered_from=covered_from, stopped=stopped)

    async def _walk(
        self,
        community: CommunityBase,
        days: int,
        tally: _Tally,
        on_progress: ProgressCallback | None,
    ) -> tuple[int, str]:
        """Poll until the walk is done; returns (covered from, why it stopped)."""
        # the adapter reaches back ``history_days`` from an empty cursor
        scoped = community.model_copy(update={"history_days": days})
        adapter = adapter_for(community)(scoped, settings=self._settings, client=self._client)
        started = int(self._clock())
        cursor: Cursor = {}
        stopped = ""
        for _ in range(min(MAX_STEPS, STEPS_PER_DAY * days + 10)):
            try:
                batch = await adapter.poll(cursor=cursor, validators={}, now=started)
            finally:
                tally.requests += adapter.counter.requests
            result = await asyncio.to_thread(self._write, community, batch)
            tally.add(batch, result)
            if on_progress is not None:
                on_progress(tally.progress(community.id))
            pending = adapter.walk_pending(batch.cursor)
            if not pending or batch.cursor == cursor:
                break
            if adapter.walks_by_creation and not tally.moved:
                stopped = "no_progress"
                break
            if tally.fetched > MAX_POSTS_PER_DAY * days:
                stopped = "budget"
                break
            cursor = batch.cursor
        else:
            stopped = "budget"
        if stopped:
            log.warning(
                "backfill of %s stopped (%s) after %d items in %d polls",
                community.id,
                stopped,
                tally.fetched,
                tally.steps,
            )
        if not pending and batch.covered_from is not None:
            covered_from = batch.covered_from  # the adapter vouches for its whole walk
        elif not pending and batch.complete:
            covered_from = batch.since
        elif adapter.walks_by_creation:  # contiguous from its oldest item to the newest
            covered_from = tally.oldest if tally.oldest is not None else started
        else:  # a stopped walk in another order vouches for what its last poll says
            covered_from = min(started, batch.covered_from or started)
        if not stopped:
            stopped = "reached" if covered_from <= batch.since else "source_end"
        await asyncio.to_thread(self._record, community, started, covered_from, tally)
        return covered_from, stopped

    def _write(self, community: CommunityBase, batch: Batch) -> IngestResult:
        with session_scope(self._engine) as session:
            now = int(self._clock())
            result = self._ingestor.write_items(session, community=community, batch=batch, now=now)
            refresh_days(session, community_id=community.id, days=result.touched_days, now=now)
            return result

    def _record(
        self, community: CommunityBase, started: int, covered_from: int, tally: _Tally
    ) -> None:
        with session_scope(self._engine) as session:
            record_backfill(
                session,
                community_id=community.id,
                covered_from=covered_from,
                covered_until=started,
                new_items=tally.new_items,
                requests=tally.requests,
            )
