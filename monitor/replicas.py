"""Which communities this process polls and exports: its share among the replicas.

On SQLite one process polls every community (``monitor.store.single_poller`` keeps a
second one out). On PostgreSQL any number of ``serve`` replicas share the store and
divide the communities by leases (``monitor.leases``): this wraps the scheduler's
choice of what is due, so a replica polls, and exports the gauges of, only the
communities it holds right now. ``round`` runs every ``renew_every`` seconds and says
what it gained (the service refreshes a gained community's snapshot and carries the
store's last success over into its health series).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.leases import LeaseKeeper
from monitor.poller import brief
from monitor.telemetry import Telemetry

log = logging.getLogger(__name__)


class Replicas:
    """This replica's share of ``communities``: all of them unless the store is shared."""

    def __init__(
        self,
        *,
        engine: Engine,
        communities: Sequence[str],
        lease_seconds: float,
        telemetry: Telemetry,
    ) -> None:
        self._communities = sorted(communities)
        self._telemetry = telemetry
        self.keeper = (
            LeaseKeeper(engine, lease_seconds=lease_seconds)
            if engine.dialect.name == "postgresql"
            else None
        )
        self._known: frozenset[str] = frozenset()
        self._failing = False
        self._turn = asyncio.Lock()
        """A round and the release one after the other: a round still running when the
        service stops would otherwise renew what the release just handed back."""
        self._released = False
        if self.keeper is None:
            telemetry.leases_held.set(len(self._communities))
            telemetry.communities_unheld.set(0)

    @property
    def shared(self) -> bool:
        """Whether several replicas may share this store (PostgreSQL)."""
        return self.keeper is not None

    @property
    def renew_every(self) -> float | None:
        return self.keeper.renew_every if self.keeper is not None else None

    def may_poll(self, community: str) -> bool:
        """Whether this replica may poll ``community`` now (and commit what it fetched)."""
        return self.keeper is None or self.keeper.holds(community)

    def exported(self, community: str) -> bool:
        """Whether /metrics carries ``community``'s series: those of what this replica polls."""
        return self.keeper is None or community in self._known and self.keeper.holds(community)

    async def round(self) -> frozenset[str]:
        """Renew, hand back and claim leases; what this round gained. A database error is
        logged once and retried at the next round (meanwhile the leases held run out on
        this replica's own clock)."""
        if self.keeper is None:
            return frozenset()
        async with self._turn:
            if self._released:
                return frozenset()
            work = asyncio.ensure_future(self._round(self.keeper))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # the scheduler's shutdown cancels a running job, but the round's thread
                # goes on: keep the turn until it is done, so release() comes after it
                await work
                raise

    async def _round(self, keeper: LeaseKeeper) -> frozenset[str]:
        try:
            state = await asyncio.to_thread(keeper.round, self._communities)
        except SQLAlchemyError as exc:
            if not self._failing:
                log.error("lease round failed (polls stop as leases run out): %s", brief(exc))
            self._failing = True
            self._telemetry.leases_held.set(len(keeper.held()))
            return frozenset()
        if self._failing:
            log.info("lease rounds recovered")
        self._failing = False
        gained, lost = state.held - self._known, self._known - state.held
        self._known = state.held
        self._telemetry.leases_held.set(len(state.held))
        self._telemetry.communities_unheld.set(state.unheld)
        if gained or lost:
            log.info(
                "leases: %d held (+%d, -%d) among %d live replicas, %d communities unheld",
                len(state.held),
                len(gained),
                len(lost),
                state.live_replicas,
                state.unheld,
            )
        return gained

    async def release(self) -> None:
        """Hand every lease back (on stop), so other replicas take over at their next round."""
        if self.keeper is None:
            return
        async with self._turn:  # after a round in flight, and no round after it
            self._released = True
            self._known = frozenset()
            try:
                await asyncio.to_thread(self.keeper.release)
            except SQLAlchemyError as exc:
                log.error(
                    "could not hand the leases back (they run out by themselves): %s", brief(exc)
                )
                return
        self._telemetry.leases_held.set(0)
