"""Mastodon: the public statuses of one hashtag on one instance.

Endpoint: ``/api/v1/timelines/tag/{hashtag}`` at ``base_url`` (the instance),
``limit=40`` (Mastodon's maximum), ``local=true`` when the community asks for
the instance's own statuses only. No authentication: the tag timeline of a
public hashtag is public. The answer is a bare JSON array of statuses, newest
first; ids are numeric strings that grow with creation.

Cursor ``{"last_id": "<id>", "seen": [...]}``: every status with an id up to
``last_id`` has been seen, and ``seen`` lists the ids of the last
``OVERLAP_SECONDS`` (15 minutes) below it. Mastodon ids are milliseconds shifted
left 16 bits; usually the milliseconds of the status's creation, but a remote
status can get an id from when the instance received it instead (real
timelines show ids minutes to an hour after ``created_at``). The walk holds
under either: a late status whose id comes from its creation time lands below
statuses that arrived before it, and the overlap catches it if it is at most
``OVERLAP_SECONDS`` late; one whose id comes from its arrival lands above the
cursor, where the forward walk finds it however late it is. So a poll
walks *forward* from ``OVERLAP_SECONDS`` before ``last_id`` with ``min_id``
(Mastodon's "statuses immediately newer than this id", unlike ``since_id``,
which gives the newest and leaves a gap), a page at a time, the next page
starting above the highest id of the last, until a page is short; a status in
the overlap is new unless ``seen`` has it. Nothing is skipped however much is
new: a poll reads at most ``max_pages`` pages (400 statuses) and says
``complete=False`` when it stops there, and the next poll goes on from where it
stopped. An idle poll is 1 request (while fewer than 40 statuses fall in the
overlap); K new statuses cost at most ``ceil(K / 40) + 1``. A forward walk reads
oldest first, so a poll it stops short vouches for nothing (the newest statuses
are unread); the cursor keeps where that walk began as ``behind_from``, and the
poll that catches up vouches from there (``covered_from``).

First poll (empty cursor): back from the newest status with ``max_id`` until a
status older than ``poll.since`` (``history_days``) or the end of the timeline.
The cursor becomes the highest id seen. When ``max_pages`` stops the walk
first, the cursor keeps the rest as ``"pending": {"max_id", "floor_time"}``
(statuses below ``max_id`` and from ``floor_time`` on are still to fetch), and
each later poll, after its forward walk, goes on down with the pages it has
left (``walk_pending``, which ``backfill`` follows). The fetched span stays
contiguous from the walk's lowest status to the newest, so a poll in this phase
says ``complete=False`` (coverage from its oldest status), and the one that
reaches ``floor_time`` vouches for everything from there (``covered_from``).

Bad items: a status whose id encodes a moment past the poll's clock (ids are
times) is rejected as ``bad_id`` and one dated before Mastodon existed or in
the future as ``bad_time``; neither moves the cursor, and the rest of the page
is kept.

Items: a status without ``in_reply_to_id`` is a thread start, one with it a
reply. Mastodon gives a reply only its parent, so a reply's thread is the root
reached through parents seen in this poll or earlier (a process-wide LRU of id
-> root, ``ROOT_CACHE``), else its parent: replies rarely carry the hashtag, so
most conversations are only partly on the timeline. Boosts (``reblog`` set)
are not posts and are skipped; deleted statuses leave the timeline. ``content``
is HTML; a content warning (``spoiler_text``) is kept as the title. The author
is ``account.acct`` (``user`` or ``user@other.instance``), pseudonymized by
ingest; since a status's ``url`` and ``uri`` name the author too, no link is
kept. ``edited_at`` marks an edit.

Rate: Mastodon allows 300 requests per 5 minutes per IP; the default here is
60 a minute per host.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from monitor.config import CommunityBase, MastodonCommunity, Settings
from monitor.errors import MalformedResponse
from monitor.http import PoliteClient
from monitor.sources.base import (
    FUTURE_SKEW_SECONDS,
    Cursor,
    FetchResult,
    Item,
    PollInput,
    RootCache,
    Source,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 40
EARLIEST = 1_458_086_400
"""2016-03-16, Mastodon's first release: no status is older."""
OVERLAP_SECONDS = 900
"""How far below the cursor a poll looks again, for statuses that federated in late."""
MAX_SEEN = 2000


ROOT_CACHE: RootCache[str] = RootCache(capacity=50_000)
"""Thread roots of statuses seen in this process, keyed by instance."""


def parse_time(value: object) -> int | None:
    """UTC epoch seconds of a Mastodon timestamp (``2025-07-17T19:07:48.000Z``), floored."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def status_id(raw: Mapping[str, Any]) -> int | None:
    """The status id as a number (ids are numeric strings), or None when it is not one."""
    value = raw.get("id")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _numeric(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _seen(cursor: Cursor) -> set[int]:
    value = cursor.get("seen")
    return (
        {n for v in value if (n := _numeric(v)) is not None} if isinstance(value, list) else set()
    )


def _int_field(cursor: Cursor, key: str) -> int | None:
    value = cursor.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pending(cursor: Cursor) -> tuple[int | None, int] | None:
    """The (max_id, floor_time) of a walk back that a poll left unfinished, if any."""
    value = cursor.get("pending")
    if not isinstance(value, Mapping):
        return None
    ceiling, floor_time = _numeric(value.get("max_id")), value.get("floor_time")
    if ceiling is None or not isinstance(floor_time, int):
        return None
    return ceiling, floor_time


class _Budget:
    """The pages one poll may still read, shared by its walks, until its deadline."""

    def __init__(self, pages: int, *, out_of_time: Callable[[], bool]) -> None:
        self.left = pages
        self.out_of_time = out_of_time

    def take(self) -> bool:
        if self.left <= 0 or self.out_of_time():
            return False
        self.left -= 1
        return True


def _id_before(status_id: int, seconds: int) -> int:
    """The id ``seconds`` of creation time before ``status_id`` (ids are ms << 16)."""
    return max(0, status_id - ((seconds * 1000) << 16))


def id_moment(status_id: int) -> float:
    """The Unix time an id encodes (for the small sequential ids of old statuses, 1970)."""
    return (status_id >> 16) / 1000


def status_item(raw: Mapping[str, Any], *, thread_id: str | None = None) -> Item | None:
    """One status as an ``Item``; None for a boost or without id or time.

    ``thread_id`` is the reply's resolved thread root; its parent when not given.
    """
    number = status_id(raw)
    created_at = parse_time(raw.get("created_at"))
    if number is None or created_at is None or raw.get("reblog") is not None:
        return None
    parent = raw.get("in_reply_to_id")
    parent_id = parent if isinstance(parent, str) and parent else None
    account = raw.get("account")
    author = account.get("acct") if isinstance(account, Mapping) else None
    content, spoiler = raw.get("content"), raw.get("spoiler_text")
    return Item(
        external_id=str(number),
        kind="thread" if parent_id is None else "reply",
        thread_id=str(number) if parent_id is None else (thread_id or parent_id),
        parent_id=parent_id,
        created_at=created_at,
        author=author if isinstance(author, str) and author else None,
        title=spoiler if isinstance(spoiler, str) else "",
        text=content if isinstance(content, str) else "",
        text_is_html=True,
        url=None,  # a status link names its author (``/@user/id``): not stored
        edited_at=parse_time(raw.get("edited_at")),
    )


class Mastodon(Source):
    """Public statuses of one hashtag on one Mastodon instance."""

    kind = "mastodon"
    earliest = EARLIEST
    rate_per_minute = 60.0

    @classmethod
    def author_namespace(cls, community: CommunityBase) -> str | None:
        """All of Mastodon, its accounts written ``acct@instance`` (``account_name``)."""
        return "mastodon"

    @classmethod
    def account_name(cls, community: CommunityBase, name: str) -> str:
        """``acct`` with its instance: a local account (``alice``) of the instance read gets
        that instance's host, so ``alice`` of two instances stay two people."""
        if "@" in name:
            return name.lower()
        host = urlsplit(community.url_root("")).hostname or ""
        return f"{name}@{host}".lower()

    max_pages = 10
    """Pages one poll may read (400 statuses); a longer backlog continues next poll."""
    root_cache: ClassVar[RootCache[str]] = ROOT_CACHE

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        if not isinstance(community, MastodonCommunity):
            raise TypeError(f"Mastodon needs a MastodonCommunity, not {type(community).__name__}")
        super().__init__(community, settings=settings, client=client)
        self.tag = community
        self.timeline = self.url(f"/api/v1/timelines/tag/{community.hashtag}")

    def walk_pending(self, cursor: Cursor) -> bool:
        return _pending(cursor) is not None or _int_field(cursor, "behind_from") is not None

    async def fetch(self, poll: PollInput) -> FetchResult:
        last = _numeric(poll.cursor.get("last_id"))
        budget = _Budget(self.max_pages, out_of_time=self.out_of_time)
        fresh: list[Mapping[str, Any]] = []
        caught_up = True
        behind_from = _int_field(poll.cursor, "behind_from")
        if last is not None:
            floor = _id_before(last, OVERLAP_SECONDS)
            ahead, caught_up = await self._forward(floor, budget)
            if not caught_up and behind_from is None:
                behind_from = int(id_moment(floor))  # from here on, all is fetched once caught up
            seen = _seen(poll.cursor)
            # above the cursor everything is new; in the overlap, what was not seen before
            fresh = [raw for raw in ahead if (n := status_id(raw)) is not None and n not in seen]
        pending = _pending(poll.cursor) if last is not None else (None, poll.since)
        behind: list[Mapping[str, Any]] = []
        covered_from: int | None = None
        if pending is not None:
            ceiling, floor_time = pending
            behind, lowest = await self._back_to(ceiling, floor_time, budget)
            behind = [r for r in behind if (parse_time(r.get("created_at")) or 0) >= floor_time]
            if lowest is None:  # the walk reached floor_time (or the timeline's end)
                pending = None
                covered_from = floor_time if caught_up else None
            else:
                pending = (lowest, floor_time)
        if not caught_up:
            covered_from = poll.now  # the newest statuses are still unread: claim nothing yet
        elif behind_from is not None and pending is None:
            # caught up: everything since the cut walk began is fetched (or since the floor)
            covered_from = behind_from if covered_from is None else min(covered_from, behind_from)
        items = self._items([*behind, *fresh])
        numbers = [int(item.external_id) for item in items]
        cursor = self._cursor(poll.cursor, last, numbers, pending)
        if not caught_up and behind_from is not None:
            cursor["behind_from"] = behind_from
        return FetchResult(
            items=items,
            cursor=cursor,
            complete=caught_up and pending is None,
            covered_from=covered_from,
        )

    def _cursor(
        self,
        previous: Cursor,
        last: int | None,
        numbers: list[int],
        pending: tuple[int | None, int] | None,
    ) -> Cursor:
        highest = max([*numbers, *([] if last is None else [last])], default=None)
        if highest is None:
            return {}
        floor = _id_before(highest, OVERLAP_SECONDS)
        recent = sorted({n for n in [*_seen(previous), *numbers] if n > floor})[-MAX_SEEN:]
        cursor: Cursor = {"last_id": str(highest), "seen": [str(n) for n in recent]}
        if pending is not None and pending[0] is not None:
            cursor["pending"] = {"max_id": str(pending[0]), "floor_time": pending[1]}
        return cursor

    async def _page(self, **bounds: int) -> list[Mapping[str, Any]]:
        params: dict[str, Any] = {"limit": PAGE_SIZE, **{k: str(v) for k, v in bounds.items()}}
        if self.tag.local:
            params["local"] = "true"
        payload = await self.get_json(self.timeline, params=params)
        if not isinstance(payload, list):
            host = httpx.URL(self.timeline).host
            raise MalformedResponse(
                f"{host} sent a tag timeline that is not a list of statuses",
                host=host,
                url=self.timeline,
            )
        return [raw for raw in payload if isinstance(raw, Mapping)]

    async def _forward(self, floor: int, budget: _Budget) -> tuple[list[Mapping[str, Any]], bool]:
        """Statuses above ``floor``, a page at a time upwards; whether the walk caught up."""
        raws: list[Mapping[str, Any]] = []
        while budget.take():
            page = await self._page(min_id=floor)
            fresh = [raw for raw in page if (status_id(raw) or 0) > floor]
            raws += fresh
            if len(page) < PAGE_SIZE or not fresh:
                return raws, True
            floor = max(status_id(raw) or 0 for raw in fresh)
        return raws, False

    async def _back_to(
        self, ceiling: int | None, since: int, budget: _Budget
    ) -> tuple[list[Mapping[str, Any]], int | None]:
        """Statuses below ``ceiling`` (from the newest when None) back to ``since``, and the
        lowest id reached when the budget ran out first (None when the walk got there)."""
        raws: list[Mapping[str, Any]] = []
        while budget.take():
            page = await self._page() if ceiling is None else await self._page(max_id=ceiling)
            older = [raw for raw in page if ceiling is None or (status_id(raw) or 0) < ceiling]
            raws += older
            numbers = [n for raw in older if (n := status_id(raw)) is not None]
            reached = any((parse_time(raw.get("created_at")) or 0) < since for raw in older)
            if reached or len(page) < PAGE_SIZE or not numbers:
                return raws, None
            ceiling = min(numbers)
        return raws, ceiling

    def _items(self, raws: Sequence[Mapping[str, Any]]) -> list[Item]:
        """Admitted items of ``raws``, oldest first so that a reply's parent resolves
        before it; boosts are left out, unusable statuses rejected (see the module doc)."""
        instance = self.base_url
        items: list[Item] = []
        for raw in sorted(raws, key=lambda r: status_id(r) or 0):
            if raw.get("reblog") is not None:
                continue  # a boost is not a post
            number = status_id(raw)
            if number is not None and id_moment(number) > self.intake.now + FUTURE_SKEW_SECONDS:
                self.intake.reject("bad_id", number)
                continue
            parent = raw.get("in_reply_to_id")
            root = None
            if isinstance(parent, str) and parent:
                root = self.root_cache.get(instance, parent) or parent
            item = status_item(raw, thread_id=root)
            if item is None:
                self.intake.reject("missing_field", raw.get("id"))
                continue
            admitted = self.intake.admit(item)
            if admitted is None:
                continue
            self.root_cache.put(instance, admitted.external_id, root=admitted.thread_id)
            items.append(admitted)
        return items
