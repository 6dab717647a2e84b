"""Replicas on one PostgreSQL database divide the communities by leases.

Every ``serve`` replica on a PostgreSQL store runs ``LeaseKeeper.round`` every
``renew_every`` seconds, in one transaction, on the database's clock (so hosts
whose clocks differ still agree):

1. it records its heartbeat in ``replicas`` and counts the live replicas (a
   heartbeat younger than the lease);
2. it renews the leases it holds (``UPDATE ... WHERE holder = me``);
3. its fair share is ``ceil(communities / live replicas)``: above it, it hands the
   surplus back (expired at once, so another replica can claim it this round);
   below it, it claims free or expired leases
   (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at < now RETURNING``: of
   two replicas claiming one lease, exactly one gets it), in an order of its own
   (a hash of replica and community), so replicas starting together spread out.

A replica polls only a community whose lease it holds, and only while its own
monotonic clock says the lease has not run out since it was last renewed (a
replica that stalls stops polling before another may claim its communities). On
SIGTERM it hands every lease back; a replica killed with SIGKILL loses its leases
by expiry, and the others take them over within ``lease_seconds`` plus a round,
then poll them at their next interval. Adding a replica lowers every fair share,
so the others hand work over to it.

SQLite serves a single process (``monitor.store.single_poller``): no leases there.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0
"""How long a lease lasts without renewal: the longest a dead replica's communities go
unclaimed (the issue allows at most 60 s; configurable as ``[replicas] lease``)."""
RENEWALS_PER_LEASE = 3
"""Rounds per lease: a lease is renewed twice before it could lapse."""
SAFETY_FRACTION = 0.8
"""A replica stops polling a community once this share of the lease has passed since its
last renewal, well before another replica may claim it."""


def replica_id() -> str:
    """This process among the replicas: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class LeaseState:
    """What one round found."""

    held: frozenset[str]
    live_replicas: int
    unheld: int
    """Enabled communities no live lease covers (after this round's claims)."""


@dataclass
class LeaseKeeper:
    """The leases of one replica; ``round`` runs in a worker thread (it blocks on SQL)."""

    engine: Engine
    me: str = field(default_factory=replica_id)
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    monotonic: Callable[[], float] = time.monotonic
    _valid_until: dict[str, float] = field(default_factory=dict)

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / RENEWALS_PER_LEASE

    def holds(self, community_id: str) -> bool:
        """Whether this replica may poll ``community_id`` now."""
        return self.monotonic() < self._valid_until.get(community_id, 0.0)

    def held(self) -> frozenset[str]:
        now = self.monotonic()
        return frozenset(c for c, until in self._valid_until.items() if now < until)

    def round(self, communities: Iterable[str]) -> LeaseState:
        """Heartbeat, renew, and hand back or claim up to the fair share (one transaction)."""
        wanted = sorted(set(communities))
        started = self.monotonic()
        with self.engine.begin() as connection:
            now = float(connection.execute(text("SELECT extract(epoch FROM now())")).scalar_one())
            until = now + self.lease_seconds
            connection.execute(
                text(
                    "INSERT INTO replicas (id, seen_at) VALUES (:me, :now) "
                    "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"
                ),
                {"me": self.me, "now": now},
            )
            connection.execute(  # long-gone replicas: keep the table small
                text("DELETE FROM replicas WHERE seen_at < :old"),
                {"old": now - 10 * self.lease_seconds},
            )
            live = connection.execute(
                text("SELECT count(*) FROM replicas WHERE seen_at > :fresh"),
                {"fresh": now - self.lease_seconds},
            ).scalar_one()
            held = set(
                connection.execute(
                    text(
                        "UPDATE leases SET expires_at = :until "
                        "WHERE holder = :me AND expires_at > :now RETURNING community_id"
                    ),
                    {"me": self.me, "until": until, "now": now},
                ).scalars()
            )
            gone = held - set(wanted)  # no longer configured (or disabled): hand back
            share = math.ceil(len(wanted) / max(1, live)) if wanted else 0
            ranked = sorted(held - gone, key=self._rank)
            surplus = gone | set(ranked[share:])
            if surplus:
                connection.execute(
                    text(
                        "UPDATE leases SET expires_at = :now "
                        "WHERE holder = :me AND community_id = ANY(:ids)"
                    ),
                    {"me": self.me, "now": now, "ids": sorted(surplus)},
                )
                held -= surplus
        # each claim in a transaction of its own: a replica never waits on one row while
        # holding another, so replicas claiming in their own orders cannot deadlock
        for community in sorted(set(wanted) - held, key=self._rank):
            if len(held) >= share:
                break
            if self._claim(community, now=now, until=until):
                held.add(community)
        with self.engine.begin() as connection:
            unheld = connection.execute(
                text(
                    "SELECT count(*) FROM unnest(CAST(:ids AS text[])) AS c(id) "
                    "WHERE NOT EXISTS (SELECT 1 FROM leases l "
                    "WHERE l.community_id = c.id AND l.expires_at > :now)"
                ),
                {"ids": wanted, "now": now},
            ).scalar_one()
        valid = started + SAFETY_FRACTION * self.lease_seconds
        self._valid_until = {community: valid for community in held}
        return LeaseState(frozenset(held), int(live), int(unheld))

    def _claim(self, community: str, *, now: float, until: float) -> bool:
        """Claim ``community`` if nobody holds it (or its lease has run out)."""
        with self.engine.begin() as connection:
            claimed = connection.execute(
                text(
                    "INSERT INTO leases (community_id, holder, expires_at) "
                    "VALUES (:c, :me, :until) "
                    "ON CONFLICT (community_id) DO UPDATE "
                    "SET holder = excluded.holder, expires_at = excluded.expires_at "
                    "WHERE leases.expires_at <= :now "
                    "RETURNING community_id"
                ),
                {"c": community, "me": self.me, "until": until, "now": now},
            ).first()
        return claimed is not None

    def release(self) -> None:
        """Hand every lease back and leave the replicas (on SIGTERM)."""
        self._valid_until = {}
        with self.engine.begin() as connection:
            now = connection.execute(text("SELECT extract(epoch FROM now())")).scalar_one()
            connection.execute(
                text("UPDATE leases SET expires_at = :now WHERE holder = :me"),
                {"me": self.me, "now": now},
            )
            connection.execute(text("DELETE FROM replicas WHERE id = :me"), {"me": self.me})

    def _rank(self, community: str) -> str:
        """This replica's own order of the communities: replicas starting together claim
        different ones first, and each hands back the ones it ranks last."""
        return hashlib.sha256(f"{self.me}\x1f{community}".encode()).hexdigest()
