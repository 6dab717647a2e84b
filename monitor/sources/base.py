"""The Source protocol and the item types every adapter produces.

An adapter knows one API. Given the cursor the previous poll left, it fetches
what is new, pages back only as far as that cursor (or ``history_days`` on a
first poll), and returns normalized ``Item``s plus the next cursor. It never
touches the database, never scores text and never exports metrics.

Identity and time of an item are pure functions of the raw item. The envelope
(community, source, fetch time, the deterministic ``uid``) is added here in
``Source.poll``, not in every adapter.

One bad item never blocks or blinds a community. Every item passes the poll's
``Intake`` before it is stored: text is cleaned (``monitor.untrusted``), ids and
links are bounded to what both stores hold, and an item whose time is not
plausible (before ``Source.earliest``, the source's own beginning, or more than
``FUTURE_SKEW_SECONDS`` past the poll's clock) is rejected, with a reason from
``monitor.errors.REJECTION_REASONS`` (the poller counts and logs each rejected
item once, by its id). Adapters pass
their items through ``self.intake`` *before* they move a cursor with them, so a
post dated year 9999 cannot put every later post behind the cursor; the rest of
the page is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from monitor.config import CommunityBase, Settings
from monitor.http import PoliteClient, RequestCounter, Response
from monitor.untrusted import clean_text, without_userinfo

log = logging.getLogger(__name__)

ItemKind = Literal["thread", "reply"]
Cursor = dict[str, Any]

FUTURE_SKEW_SECONDS = 300
"""How far past the poll's clock an item's time may lie (servers' clocks drift a little);
an item dated later is rejected, so it cannot move a time cursor past posts to come."""
EARLIEST_WEB = 631_152_000
"""1990-01-01: no forum, feed or federated post is older (``Source.earliest``'s default)."""
MAX_ID_LENGTH = 128
"""Longest external id (and thread or parent id) the store's columns hold."""
MAX_URL_LENGTH = 2048
"""Longest link the store's column holds; a longer one is not kept."""


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


def bounded_id(value: str) -> str:
    """``value``, or its SHA-256 when it would not fit the store's id columns."""
    if len(value) <= MAX_ID_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


MAX_EPOCH = 2**53
"""Larger numbers are no time (and no JSON-safe integer)."""
INVALID_TIME = -1
"""What ``epoch_seconds`` makes of a number that is no time; the intake rejects it as
``bad_time``, like any time before its source existed."""


def epoch_seconds(value: object) -> int | None:
    """A JSON number of seconds as whole seconds: None when there is no number (absent,
    a boolean, a string), ``INVALID_TIME`` for NaN, infinities and magnitudes no time has."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or abs(value) > MAX_EPOCH:
        return INVALID_TIME
    return int(value)


def _clean_id(value: str | None) -> str | None:
    return None if value is None else bounded_id(clean_text(value))


def sanitized(item: Item, *, now: int) -> Item:
    """``item`` with text both stores accept: no NUL, control character or unpaired
    surrogate, ids bounded, a link without ``user:password@`` (and dropped when over-long),
    an implausible edit time unset."""
    url = without_userinfo(clean_text(item.url)) if item.url is not None else None
    if url is not None and len(url) > MAX_URL_LENGTH:
        url = None
    edited = item.edited_at
    plausible_edit = edited is not None and item.created_at <= edited <= now + FUTURE_SKEW_SECONDS
    external_id = bounded_id(clean_text(item.external_id))
    thread_id = bounded_id(clean_text(item.thread_id))
    parent_id = _clean_id(item.parent_id)
    author = clean_text(item.author) or None if item.author is not None else None
    title = clean_text(item.title)
    text = clean_text(item.text)
    edited_at = edited if plausible_edit else None
    if (
        # most items are clean: every value is the one it was, so the item is kept as is
        url == item.url
        and external_id == item.external_id
        and thread_id == item.thread_id
        and parent_id == item.parent_id
        and author == item.author
        and title == item.title
        and text == item.text
        and edited_at == item.edited_at
    ):
        return item
    return dataclasses.replace(
        item,
        external_id=external_id,
        thread_id=thread_id,
        parent_id=parent_id,
        author=author,
        title=title,
        text=text,
        url=url,
        edited_at=edited_at,
    )


Rejection = tuple[str, str | None]
"""(reason, the item's id where it has one): never its text."""


class Intake:
    """The gate of one poll's items: cleans what it admits, notes what it rejects."""

    def __init__(self, *, community: str, earliest: int, now: int) -> None:
        self.community = community
        self.earliest = earliest
        self.now = now
        self.rejected: list[Rejection] = []

    def plausible_time(self, moment: int | None) -> bool:
        """Whether ``moment`` lies between the source's beginning and now (plus a skew)."""
        return moment is not None and self.earliest <= moment <= self.now + FUTURE_SKEW_SECONDS

    def admit(self, item: Item) -> Item | None:
        """The cleaned item, or None (counted) when its time is not plausible."""
        if not isinstance(item.created_at, int) or not self.plausible_time(item.created_at):
            self.reject("bad_time", item.external_id)
            return None
        return sanitized(item, now=self.now)

    def reject(self, reason: str, external_id: object = None) -> None:
        """Note one item that cannot be normalized (its id, if it has one, is kept whole
        only up to ``MAX_ID_LENGTH``)."""
        ident = None if external_id is None else bounded_id(clean_text(str(external_id)))
        self.rejected.append((reason, ident))


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
    rejected: list[Rejection] = field(default_factory=list)
    """Items the poll's ``Intake`` rejected."""


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
    earliest: ClassVar[int] = EARLIEST_WEB
    """No item of this source is older (UTC epoch seconds): the source's own beginning."""
    rate_per_minute: ClassVar[float] = 60.0
    """Default polite rate for this kind's host; ``[http] rate_per_minute`` overrides it."""
    concurrent_requests: ClassVar[int] = 1
    """Requests one poll of this kind has in flight at most (the HTTP pool is sized by it)."""

    @classmethod
    def host_for(cls, community: CommunityBase, settings: Settings) -> str:
        """The host a poll of ``community`` talks to (polls share their slots by host)."""
        return httpx.URL(community.url_root(cls.default_base_url)).host

    walks_by_creation: ClassVar[bool] = True
    """Whether a walk spread over polls reaches back in creation time, each poll's items
    together with the polls' before it forming every item from the oldest to now.
    ``backfill`` judges a walk's progress, and what a walk it stops covers, by that; an
    adapter whose walk runs in another order (GitHub's, by latest activity) says False,
    and then only its own ``covered_from`` says what a stopped walk covers."""

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        self.community = community
        self.settings = settings
        self.client = client
        self.counter = RequestCounter()
        self.intake = Intake(community=community.id, earliest=self.earliest, now=int(time.time()))
        self.deadline = time.monotonic() + settings.http.poll_deadline
        self.base_url = community.url_root(self.default_base_url)

    @classmethod
    def author_namespace(cls, community: CommunityBase) -> str | None:
        """Where one author name is one account: communities of one namespace can share
        people, so participant flows are counted between them (``monitor.analysis.flows``);
        None when names do not identify accounts at all. The default: this kind at its API
        root (one Discourse forum, one GitHub host)."""
        split = urlsplit(community.url_root(cls.default_base_url))
        root = (split.netloc.lower() + split.path).rstrip("/")
        return f"{cls.kind}:{root}"

    @classmethod
    def account_name(cls, community: CommunityBase, name: str) -> str:
        """``name`` as it is written throughout this community's namespace."""
        return name

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        """Extra request headers for this source (a site-specific User-Agent)."""
        return {}

    def credentials(self) -> dict[str, str]:
        """Headers that authenticate us to this source's API (a key, a token): sent to the
        origin of each request and never to another one a redirect points to."""
        return {}

    def rate_for(self, host: str) -> float:
        return self.settings.http.rate_per_minute.get(host, self.rate_per_minute)

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        validators: Mapping[str, str] | None = None,
        error_body: bool = False,
    ) -> Response:
        host = httpx.URL(url).host
        self.client.set_rate(host, self.rate_for(host))
        return await self.client.get(
            url,
            params=params,
            headers=self.headers(),
            credentials=self.credentials(),
            validators=validators,
            counter=self.counter,
            error_body=error_body,
        )

    async def get_json(self, url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return (await self.get(url, params=params)).json()

    def out_of_time(self) -> bool:
        """Whether the poll's deadline (``[http] poll_deadline``) has passed: an adapter then
        stops paging as it does at its page bound, and the poll commits what it has."""
        return time.monotonic() >= self.deadline

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
        resume_from: int | None = None,
    ) -> Batch:
        """Fetch and envelope what is new. ``resume_from`` (with an empty cursor) is where
        the store's own data ends: a first poll reaches back no further than that."""
        self.counter = RequestCounter()
        moment = int(time.time()) if now is None else now
        self.intake = Intake(community=self.community.id, earliest=self.earliest, now=moment)
        self.deadline = time.monotonic() + self.settings.http.poll_deadline
        since = moment - self.community.history_days * 86400
        if resume_from is not None and not cursor:
            since = max(since, resume_from)
        result = await self.fetch(
            PollInput(cursor=cursor, validators=validators, since=since, now=moment)
        )
        unique: dict[str, Item] = {}
        for item in result.items:
            # again here for adapters that do not gate their items (cheap when clean)
            admitted = self.intake.admit(item)
            if admitted is not None:
                unique[admitted.external_id] = admitted  # a page overlap repeats items
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
            rejected=list(self.intake.rejected),
        )
