"""Admission of polls: a bounded number at a time, shared fairly between hosts.

Every poll goes through one ``PollQueue``, whether ``serve``'s scheduler asked for it
or ``poll-once`` did:

- at most ``limit`` polls (``max_concurrent_polls``) run at once. The others wait
  in the queue as entries, not as started polls: nothing of a waiting poll has
  been sent, so it holds no connection and no timeout runs for it. A thousand
  communities due at the same moment are a queue of a thousand worked off
  ``limit`` at a time, not a thousand requests racing for sockets;
- a community is in the queue at most once: asking for it again while it waits
  returns the waiting entry (a scheduled run that comes round while the last one
  still waits is coalesced, not doubled), and asking while it runs is answered
  "deferred" at once. Both are counted in
  ``forum_monitor_polls_coalesced_total{community}``;
- a free slot goes to the host with the fewest polls running among the hosts with
  polls waiting, the longest-waiting first within a host (polls asked for at the same
  moment, as a scheduler's due jobs or ``poll-once``'s are, are queued together before
  any of them starts). Communities on one host
  get every slot; communities on several hosts share them, so a slow host
  (rate-limited, answering slowly, timing out) holds about its share of the slots
  while other hosts have polls waiting, and a host with nothing waiting leaves its
  share to the others. A poll never loses a slot it holds: a slow host's polls
  that already run keep their slots until they end, at the latest after
  ``[http] poll_deadline`` plus one request's ``total_timeout``, so that is the
  longest a newly due host can wait when the slow one had taken every slot
  while it was alone in the queue.

``forum_monitor_polls_waiting`` and ``forum_monitor_polls_running`` show the queue.
Waiting polls that never stop coming (the gauge above zero for whole intervals, polls
coalesced every round) mean the process cannot keep up: see the README's "Capacity".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from monitor.config import CommunityBase
from monitor.poller import PollOutcome, source_of
from monitor.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Entry:
    community: CommunityBase
    host: str
    order: int
    outcome: asyncio.Future[PollOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PollQueue:
    """Runs ``run(community)`` for the communities submitted, ``limit`` at a time."""

    def __init__(
        self,
        *,
        limit: int,
        run: Callable[[CommunityBase], Awaitable[PollOutcome]],
        host_of: Callable[[CommunityBase], str],
        telemetry: Telemetry | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._run = run
        self._host_of = host_of
        self._telemetry = telemetry
        self._waiting: dict[str, deque[_Entry]] = {}
        """Host -> its waiting entries, oldest first."""
        self._queued: dict[str, _Entry] = {}
        """Community id -> its waiting entry."""
        self._running: dict[str, str] = {}
        """Community id -> host, of the polls running."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._order = itertools.count()
        self._closed = False
        self._dispatch_due = False

    @property
    def waiting(self) -> int:
        return len(self._queued)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """The polls running now (``Service.stop`` waits for them)."""
        return set(self._tasks)

    def submit(self, community: CommunityBase) -> asyncio.Future[PollOutcome]:
        """Queue a poll of ``community``; the future holds its outcome once it ran.

        A community already waiting is not queued twice (its entry's future is
        returned); one running now gets a "deferred" outcome at once.
        """
        if self._closed:
            return self._settled(community, "cancelled")
        queued = self._queued.get(community.id)
        if queued is not None:
            self._coalesced(community)
            return queued.outcome
        if community.id in self._running:
            self._coalesced(community)
            return self._settled(community, "deferred")
        entry = _Entry(community, self._host_of(community), next(self._order))
        self._queued[community.id] = entry
        self._waiting.setdefault(entry.host, deque()).append(entry)
        if not self._dispatch_due:  # once the submitters of this moment are all queued
            self._dispatch_due = True
            asyncio.get_running_loop().call_soon(self._dispatch)
        self._publish()
        return entry.outcome

    def close(self) -> None:
        """Admit nothing more; polls still waiting end "cancelled" (nothing of them ran)."""
        self._closed = True
        for entry in self._queued.values():
            if not entry.outcome.done():
                entry.outcome.set_result(_outcome(entry.community, "cancelled"))
        self._queued.clear()
        self._waiting.clear()
        self._publish()

    def _settled(self, community: CommunityBase, outcome: str) -> asyncio.Future[PollOutcome]:
        future: asyncio.Future[PollOutcome] = asyncio.get_running_loop().create_future()
        future.set_result(_outcome(community, outcome))
        return future

    def _coalesced(self, community: CommunityBase) -> None:
        log.debug("a poll of %s is already waiting or running; not queued again", community.id)
        if self._telemetry is not None:
            self._telemetry.polls_coalesced.labels(community=community.id).inc()

    def _next(self) -> _Entry:
        """The oldest entry of the host with the fewest polls running (then the oldest)."""
        running = {host: 0 for host in self._waiting}
        for host in self._running.values():
            if host in running:
                running[host] += 1
        host = min(self._waiting, key=lambda h: (running[h], self._waiting[h][0].order))
        entries = self._waiting[host]
        entry = entries.popleft()
        if not entries:
            del self._waiting[host]
        del self._queued[entry.community.id]
        return entry

    def _dispatch(self) -> None:
        self._dispatch_due = False
        while self._waiting and len(self._running) < self.limit and not self._closed:
            entry = self._next()
            self._running[entry.community.id] = entry.host
            task = asyncio.create_task(self._execute(entry), name=f"poll:{entry.community.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._publish()

    async def _execute(self, entry: _Entry) -> None:
        try:
            outcome = await self._run(entry.community)
        except asyncio.CancelledError:
            if not entry.outcome.done():
                entry.outcome.set_result(_outcome(entry.community, "cancelled"))
            raise
        except Exception:  # ``run`` reports failures as outcomes: this is a bug
            log.exception("poll of %s failed unexpectedly", entry.community.id)
            if not entry.outcome.done():
                entry.outcome.set_result(_outcome(entry.community, "internal"))
        else:
            if not entry.outcome.done():
                entry.outcome.set_result(outcome)
        finally:
            del self._running[entry.community.id]
            self._dispatch()

    def _publish(self) -> None:
        if self._telemetry is not None:
            self._telemetry.polls_waiting.set(len(self._queued))
            self._telemetry.polls_running.set(len(self._running))


def _outcome(community: CommunityBase, outcome: str) -> PollOutcome:
    return PollOutcome(community.id, source_of(community), outcome)
