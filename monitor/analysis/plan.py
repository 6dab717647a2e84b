"""Which communities' snapshots to recompute, and in what order.

A snapshot is recomputed when

- there is none yet (after a start: these come first, so the service can be
  ready before every community is analysed, and the rest follow in order);
- the community's data changed (``monitor.store.changes``): a poll with new or
  edited posts or a change in coverage, a backfill, from any process;
- it is ``MAX_AGE_SECONDS`` old. Windows end "now", so even a quiet community's
  values drift as posts leave them; this bounds the drift to 5 minutes of a
  window (the default poll interval: a community polled that often with news
  is recomputed after each such poll anyway). The daily series and its trends
  are not recomputed then unless a day ended (``snapshot.SeriesBasis``).

The first recompute after a snapshot appears comes after a share of
``MAX_AGE_SECONDS`` fixed per community (from a hash of its id), and every
later one ``MAX_AGE_SECONDS`` after the last, so the periodic work is spread
evenly over time instead of recomputing every community at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence

from monitor.analysis.snapshot import CommunitySnapshot
from monitor.config import CommunityBase

MAX_AGE_SECONDS = 300
"""A snapshot whose data did not change is recomputed after this long."""
RETRY_SECONDS = 60
"""After a failed recompute (the store could not be read), the next try waits this long."""


def phase(community_id: str) -> float:
    """A share of ``MAX_AGE_SECONDS`` in (0, 1], fixed per community."""
    return (zlib.crc32(community_id.encode()) % 1000 + 1) / 1000


class AnalysisPlan:
    """When each community's snapshot is due; the clock is the caller's."""

    def __init__(self) -> None:
        self._due_at: dict[str, float] = {}
        self._retry_at: dict[str, float] = {}

    def due(
        self,
        communities: Sequence[CommunityBase],
        *,
        latest: Callable[[str], CommunitySnapshot | None],
        versions: Mapping[str, int],
        now: float,
    ) -> list[CommunityBase]:
        """The communities to recompute at ``now``, most stale first: without a snapshot
        (in config order), then those whose data changed, then those due by age."""
        ranked: list[tuple[tuple[int, float], CommunityBase]] = []
        for position, community in enumerate(communities):
            if self._retry_at.get(community.id, 0.0) > now:
                continue
            snapshot = latest(community.id)
            if snapshot is None:
                ranked.append(((0, position), community))
            elif versions.get(community.id, 0) != snapshot.data_version:
                ranked.append(((1, snapshot.computed_at), community))
            elif now >= self._due_at.get(community.id, 0.0):
                ranked.append(((2, self._due_at.get(community.id, 0.0)), community))
        ranked.sort(key=lambda entry: entry[0])
        return [community for _, community in ranked]

    def computed(self, community_id: str, *, now: float) -> None:
        """A snapshot of ``community_id`` was computed at ``now``."""
        first = community_id not in self._due_at
        share = phase(community_id) if first else 1.0
        self._due_at[community_id] = now + share * MAX_AGE_SECONDS
        self._retry_at.pop(community_id, None)

    def failed(self, community_id: str, *, now: float) -> None:
        self._retry_at[community_id] = now + RETRY_SECONDS

    def has_failed(self, community_id: str) -> bool:
        """Whether the last recompute of ``community_id`` failed."""
        return community_id in self._retry_at
