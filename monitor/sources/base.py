"""The Source protocol and the item types every adapter produces.

An adapter knows one API. Given the cursor the previous poll left, it fetches
what is new, pages back only as far as that cursor (or ``history_days`` on a
first poll), and returns normalized ``Item``s plus the next cursor. It never
touches the database, never scores text and never exports metrics.

Identity and time of an item are pure functions of the raw item. The envelope
(community, source, fetch time, the deterministic ``uid``) is added here in
``Source.poll``, not in every adapter.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import httpx

from monitor.config import CommunityBase, Settings
from monitor.http import PoliteClient, RequestCounter, Response

ItemKind = Literal["thread", "reply"]
Cursor = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Item:
    """One thread start or reply, as the source reported it."""

    external_id: str
    kind: ItemKind
    thread_id: str
    created_at: int
    """UTC epoch seconds."""
    parent_id: str | None = None
    author: str | None = None
    """The source's user name; ``None`` when deleted or removed. Pseudonymized by ingest."""
    title: str = ""
    text: str = ""
    text_is_html: bool = False
    url: str | None = None
    edited_at: int | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Envelope:
    community: str
    source: str
    fetched_at: int
    item: Item

    @property
    def uid(self) -> str:
        return f"{self.source}:{self.community}:{self.item.external_id}"


@dataclass(slots=True)
class FetchResult:
    """What an adapter's ``fetch`` returns."""

    items: list[Item]
    cursor: Cursor
    validators: dict[str, Any] = field(default_factory=dict)
    not_modified: bool = False
    complete: bool = True
    """False when the poll stopped before reaching its cursor (a bounded walk, a feed
    shorter than the gap): then only the span of the fetched items counts as covered."""
    covered_from: int | None = None
    """When set, the adapter vouches that this poll, with the polls before it, fetched
    everything from here to now (a walk back in time spread over several polls ended);
    it overrides what ``complete`` implies."""


@dataclass(slots=True)
class Batch:
    """One poll's outcome: enveloped items and the state to commit with them."""

    envelopes: list[Envelope]
    cursor: Cursor
    validators: dict[str, Any]
    requests: int
    not_modified: bool
    since: int = 0
    complete: bool = True
    covered_from: int | None = None


@dataclass(frozen=True, slots=True)
class PollInput:
    cursor: Cursor
    validators: Mapping[str, Any]
    since: int
    """Oldest creation time wanted on a first poll (now - history_days)."""
    now: int


RootId = TypeVar("RootId", int, str)


class RootCache(Generic[RootId]):
    """A bounded LRU of item id -> thread root id, per API root; shared by all polls.

    For sources whose replies name only their parent: a root found once (through
    parents in a poll) serves every later reply under it.
    """

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._roots: OrderedDict[tuple[str, RootId], RootId] = OrderedDict()

    def get(self, api: str, item_id: RootId) -> RootId | None:
        root = self._roots.get((api, item_id))
        if root is not None:
            self._roots.move_to_end((api, item_id))
        return root

    def put(self, api: str, item_id: RootId, *, root: RootId) -> None:
        self._roots[(api, item_id)] = root
        self._roots.move_to_end((api, item_id))
        while len(self._roots) > self.capacity:
            self._roots.popitem(last=False)

    def clear(self) -> None:
        self._roots.clear()


class Source(ABC):
    """Base of every adapter: owns the HTTP seam and the envelope."""

    kind: ClassVar[str]
    default_base_url: ClassVar[str] = ""
    rate_per_minute: ClassVar[float] = 60.0
    """Default polite rate for this kind's host; ``[http] rate_per_minute`` overrides it."""

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        self.community = community
        self.settings = settings
        self.client = client
        self.counter = RequestCounter()
        self.base_url = community.url_root(self.default_base_url)

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        """Extra request headers for this source (auth, a site-specific User-Agent)."""
        return {}

    def rate_for(self, host: str) -> float:
        return self.settings.http.rate_per_minute.get(host, self.rate_per_minute)

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        validators: Mapping[str, str] | None = None,
    ) -> Response:
        host = httpx.URL(url).host
        self.client.set_rate(host, self.rate_for(host))
        return await self.client.get(
            url,
            params=params,
            headers=self.headers(),
            validators=validators,
            counter=self.counter,
        )

    async def get_json(self, url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return (await self.get(url, params=params)).json()

    def walk_pending(self, cursor: Cursor) -> bool:
        """Whether ``cursor`` holds a walk back in time that the next poll goes on with.

        Adapters that spread a long walk over several polls say so here; ``backfill``
        polls again while it is True. The default: a poll walks as far as it can.
        """
        return False

    @abstractmethod
    async def fetch(self, poll: PollInput) -> FetchResult:
        """Fetch what is new since ``poll.cursor`` (or since ``poll.since`` if it is empty)."""

    async def poll(
        self,
        *,
        cursor: Cursor,
        validators: Mapping[str, Any],
        now: int | None = None,
    ) -> Batch:
        self.counter = RequestCounter()
        moment = int(time.time()) if now is None else now
        since = moment - self.community.history_days * 86400
        result = await self.fetch(
            PollInput(cursor=cursor, validators=validators, since=since, now=moment)
        )
        unique: dict[str, Item] = {}
        for item in result.items:
            unique[item.external_id] = item  # a page overlap repeats items; keep one
        envelopes = [
            Envelope(self.community.id, self.kind, moment, item) for item in unique.values()
        ]
        return Batch(
            envelopes=envelopes,
            cursor=result.cursor,
            validators=result.validators,
            requests=self.counter.requests,
            not_modified=result.not_modified,
            since=since,
            complete=result.complete,
            covered_from=result.covered_from,
        )
