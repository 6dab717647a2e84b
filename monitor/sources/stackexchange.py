"""Stack Exchange: one site's questions (threads), answers and comments (replies).

Endpoints (API 2.3 at ``base_url``, default https://api.stackexchange.com, ``site=`` the
site's API name): ``/2.3/questions`` (with ``tagged=`` when the community has tags),
``/2.3/answers`` and ``/2.3/comments``, each ``sort=creation&order=asc&fromdate=F``, 100
items a page. ``fromdate`` is inclusive and in seconds, like every time the API hands out.

Filter: the built-in ``withbody`` (the default fields plus ``body``). A custom filter
(``/filter/create``) could leave out what the metrics do not read (score, view count,
profile image, ...), but its string is opaque and made by the API: ``withbody`` is the
documented filter that carries everything needed (ids, ``creation_date``, ``owner``,
``title``, ``body``, ``question_id``/``post_id``, ``last_edit_date``) and the paging and
throttle fields (``has_more``, ``quota_remaining``, ``backoff``). The thread lookups below
use the default filter.

Walks, per endpoint, oldest first: a poll asks from ``last - OVERLAP_SECONDS`` (5 minutes
below the newest item it took, for items the API lists a little late) and pages by
creation time: the next page starts at the newest time of the last (``fromdate`` again,
not ``page=2``, so an item deleted meanwhile cannot shift the next page past one unread),
until ``has_more`` is false. Cursor, per endpoint: ``{"last": T, "seen": {id: time}}``:
every item created before ``T`` has been taken, and ``seen`` holds the ids of the last
``OVERLAP_SECONDS`` below ``T``, so the overlap is read again but not taken twice. An idle
poll is 1 request per endpoint (while fewer than 100 items fall in the overlap). K new
items fill pages of 100 after the overlap's, each page after the first reading the
newest second of the one before again: at most ``ceil(K / 100) + 1`` requests per
endpoint while the overlap holds a few items (with ``o`` in it and no two items in one
second, ``max(1, 1 + ceil((o + K - 100) / 99))``), plus the lookups below. A first poll
walks from ``poll.since`` (``history_days``).

Coverage: a walk reads oldest first, so one cut short (``max_pages`` pages of an
endpoint, the poll's deadline, a ``backoff`` longer than a poll may wait, the day's quota
spent, thread lookups out of budget) claims nothing: the newest items are unread. The
cursor keeps where the first cut walk began as ``behind_from`` (``walk_pending``, which
``backfill`` follows), and the poll in which all three walks catch up vouches from there
(``covered_from``); until then every poll says ``complete=False`` with an empty span. A
first poll of a busy whole site therefore takes several polls (10 pages an endpoint
each) before it claims anything: give such a community a short ``history_days``.

Threads: a question is its own thread; an answer's thread is its ``question_id``. A
comment names only its ``post_id``, a question or an answer (the ``withbody`` filter has
no ``post_type``), so its thread comes from, in turn: the posts of this poll, a
process-wide cache of post id -> question id (``ROOT_CACHE``, the 50,000 used last, per
API root and site), and a lookup of the unknown ids with ``/2.3/answers/{ids}`` (100 ids
a request): an id it does not return is taken for a question. Lookups are bounded to
``max_lookups`` (20) requests a poll, shared by every walk; an item whose thread is still
unknown then ends its walk, before it (the walk is cut short, as above, and the next
poll goes on from there).

``tagged`` (at most 5 tags, all of which a question must carry, as the API's own
``tagged`` means): questions are asked for with ``tagged``, and the walks of answers and
comments still read the whole site, keeping those whose question carries the tags. The
API's ``/answers`` and ``/comments`` take no ``tagged``; asking per question
(``/questions/{ids}/answers``) would cost a request per 100 watched questions every
poll, and miss answers to older questions. Instead a question's scope is known from the
tagged walk (its questions are in), the process-wide ``SCOPE_CACHE``, or a lookup of its
tags with ``/2.3/questions/{ids}`` (an id it does not return, a deleted question, is out).
So a tagged community costs what the site's whole answer and comment streams cost, about
one request per 100 of the site's new answers or comments, plus up to two lookups for
each such page whose questions were not seen before (on Stack Overflow in 2026, some
hundreds of requests a day beyond the idle polls).

Politeness: ``backoff`` in an answer ("wait this many seconds before calling this method
again") is kept per API root and method (``questions``, ``answers``, ``comments``,
``answers/{ids}``, ``questions/{ids}``) in a process-wide table (``BACKOFFS``) and in the
cursor, so another community on the same site and a restart honour it too; a poll that
needs the method sooner waits when the wait fits in ``[http] max_retry_wait`` and the
poll's deadline, else that walk stops there. ``quota_remaining`` is exported as
``forum_monitor_rate_limit_remaining{host}``; at 0 the poll asks nothing more. The API
allows 300 requests a day per IP without an app key and 10,000 with one (``[stackexchange]
key``: not a secret, it goes in the query string); the default rate is 30 a minute.

Errors: the API answers an error with HTTP 400 and ``{error_id, error_name,
error_message}`` (gzipped, like every answer). That is a ``StackExchangeError`` naming
them (reason ``http_5xx`` for ``internal_error`` 500 and ``temporarily_unavailable`` 503,
else ``http_4xx``); ``throttle_violation`` (502) is a ``StackExchangeThrottled``, a
``RateLimited`` whose wait is the "available in N seconds" of its message (at most an
hour), else ``THROTTLE_WAIT_SECONDS``.

Items: a question is a thread (closed ones too: ``closed_date`` changes nothing); title
(its HTML entities undone) and ``body`` (HTML) are scored. Ids are post ids (questions
and answers share one sequence) and ``c<comment_id>`` for comments (their own sequence).
The author is ``owner.user_id``, pseudonymized by ingest: display names change and
collide, the id does not. An owner of ``user_type`` ``does_not_exist`` (a deleted
account) and one without an id leave the post without author. ``last_edit_date`` marks an
edit; a comment's ``edited`` has no time and is not kept. The item's own ``link`` (a
question's URL, which names no user) is kept; ``owner.link``, a profile URL, never is.
Deleted posts are not listed by the API.

Bad items: one without its id, its question or post, or its time is rejected as
``missing_field``, one whose id is no post id as ``bad_id``, one dated before Stack
Overflow existed or in the future as ``bad_time`` (only when its question is in scope).
None of them moves a cursor, and the rest of the page is kept.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from monitor.config import CommunityBase, Settings, StackExchangeCommunity
from monitor.errors import HTTPStatusError, MalformedResponse, RateLimited
from monitor.http import MAX_SERVER_WAIT, PoliteClient, server_wait
from monitor.sources.base import (
    INVALID_TIME,
    Cursor,
    FetchResult,
    Item,
    PollInput,
    RootCache,
    Source,
    epoch_seconds,
)
from monitor.untrusted import for_log

DEFAULT_BASE_URL = "https://api.stackexchange.com"
API_VERSION = "/2.3"
PAGE_SIZE = 100
"""Items a page, the API's maximum; also the most ids one lookup names."""
FILTER = "withbody"
EARLIEST = 1_217_462_400
"""2008-07-31, Stack Overflow's first question: no post of any site is older."""
OVERLAP_SECONDS = 300
"""How far below the newest item taken a poll reads again, for items listed late."""
MAX_SEEN = 2000
MAX_ID = 2**53
THROTTLE_WAIT_SECONDS = 60.0
"""Wait after a ``throttle_violation`` whose message names none (the API's IP ban lasts
"30 seconds to a few minutes")."""
_AVAILABLE_IN = re.compile(r"available in (\d+) seconds")


# ---------------------------------------------------------------- errors


class StackExchangeError(HTTPStatusError):
    """An error object the API answered: ``error_id``, ``error_name``; ``status`` is the
    error id (the API numbers its errors like HTTP statuses), ``http_status`` what came."""

    def __init__(
        self,
        message: str,
        *,
        host: str,
        url: str = "",
        error_id: int,
        error_name: str,
        http_status: int,
    ) -> None:
        status = error_id if 400 <= error_id < 600 else http_status
        super().__init__(message, host=host, url=url, status=status)
        self.error_id = error_id
        self.error_name = error_name
        self.http_status = http_status


class StackExchangeThrottled(RateLimited):
    """``throttle_violation`` (error 502): too many requests from this IP, or the day's
    quota spent; ``retry_after`` from the message when it says, at most an hour."""

    def __init__(self, message: str, *, host: str, url: str = "", retry_after: float) -> None:
        super().__init__(message, host=host, url=url, status=502, retry_after=retry_after)
        self.error_id = 502
        self.error_name = "throttle_violation"


def throttle_wait(message: object) -> float:
    """Seconds a ``throttle_violation`` asks for ("... more requests available in 82621
    seconds"), at most ``MAX_SERVER_WAIT``; ``THROTTLE_WAIT_SECONDS`` when it names none."""
    found = _AVAILABLE_IN.search(message) if isinstance(message, str) else None
    return server_wait(float(found.group(1))) if found else THROTTLE_WAIT_SECONDS


def api_error(
    body: object, *, host: str, url: str = "", http_status: int
) -> HTTPStatusError | None:
    """The typed failure an error object stands for; None when ``body`` is none."""
    if not isinstance(body, Mapping):
        return None
    error_id, name, detail = body.get("error_id"), body.get("error_name"), body.get("error_message")
    if not isinstance(error_id, int) or isinstance(error_id, bool) or not isinstance(name, str):
        return None
    text = f"{host} answered Stack Exchange error {error_id} {for_log(name)}"
    if isinstance(detail, str) and detail:
        text += f": {for_log(detail)}"
    if name == "throttle_violation" or error_id == 502:
        wait = throttle_wait(detail)
        return StackExchangeThrottled(
            f"{text}; not asking again for {wait:.0f}s", host=host, url=url, retry_after=wait
        )
    return StackExchangeError(
        text, host=host, url=url, error_id=error_id, error_name=name, http_status=http_status
    )


def _json_or_none(content: bytes) -> object:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------- answers and items


@dataclass(frozen=True, slots=True)
class Listing:
    """One answer of the API: its items and the wrapper fields this adapter reads."""

    items: list[Mapping[str, Any]]
    has_more: bool
    quota_remaining: int | None = None
    backoff: float | None = None


def parse_listing(body: object, *, host: str, url: str = "") -> Listing:
    """The wrapper of an answer; an error object raises it, anything else is malformed."""
    error = api_error(body, host=host, url=url, http_status=200)
    if error is not None:
        raise error
    items = body.get("items") if isinstance(body, Mapping) else None
    has_more = body.get("has_more") if isinstance(body, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(items, list):
        raise MalformedResponse(f"{host} sent an answer without items", host=host, url=url)
    if not isinstance(has_more, bool):
        raise MalformedResponse(f"{host} sent an answer without has_more", host=host, url=url)
    return Listing(
        items=[raw for raw in items if isinstance(raw, Mapping)],
        has_more=has_more,
        quota_remaining=_whole(body.get("quota_remaining")),
        backoff=_positive(body.get("backoff")),
    )


def _positive(value: object) -> float | None:
    """Seconds worth waiting for, or None (an absurd wait is cut to an hour when noted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def post_id(value: object) -> int | None:
    """A question, answer, comment or user id: an integer in ``1..MAX_ID``, else None."""
    number = _whole(value)
    return number if number is not None and 0 < number <= MAX_ID else None


def author_of(owner: object) -> str | None:
    """``owner.user_id`` as the name ingest pseudonymizes; None for a deleted account."""
    if not isinstance(owner, Mapping) or owner.get("user_type") == "does_not_exist":
        return None
    user = post_id(owner.get("user_id"))
    return None if user is None else str(user)


def _created(raw: Mapping[str, Any]) -> int | None:
    """``creation_date``: None when absent, ``INVALID_TIME`` when it is no number."""
    value = raw.get("creation_date")
    if value is None:
        return None
    moment = epoch_seconds(value)
    return INVALID_TIME if moment is None else moment


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _link(raw: Mapping[str, Any]) -> str | None:
    """The post's own ``link`` (never ``owner.link``, which names a user)."""
    link = raw.get("link")
    return link if isinstance(link, str) and link.startswith(("https://", "http://")) else None


def _edited(raw: Mapping[str, Any]) -> int | None:
    moment = epoch_seconds(raw.get("last_edit_date"))
    return moment if moment is not None and moment > 0 else None


def question_item(raw: Mapping[str, Any]) -> Item | None:
    """A question as a thread start; None without its id or time."""
    question, created = post_id(raw.get("question_id")), _created(raw)
    if question is None or created is None:
        return None
    return Item(
        external_id=str(question),
        kind="thread",
        thread_id=str(question),
        created_at=created,
        author=author_of(raw.get("owner")),
        title=html.unescape(_text(raw, "title")),
        text=_text(raw, "body"),
        text_is_html=True,
        url=_link(raw),
        edited_at=_edited(raw),
    )


def answer_item(raw: Mapping[str, Any]) -> Item | None:
    """An answer as a reply in its question's thread; None without ids or time."""
    answer, question = post_id(raw.get("answer_id")), post_id(raw.get("question_id"))
    created = _created(raw)
    if answer is None or question is None or created is None:
        return None
    return Item(
        external_id=str(answer),
        kind="reply",
        thread_id=str(question),
        parent_id=str(question),
        created_at=created,
        author=author_of(raw.get("owner")),
        text=_text(raw, "body"),
        text_is_html=True,
        url=_link(raw),
        edited_at=_edited(raw),
    )


def comment_item(raw: Mapping[str, Any], *, question: int) -> Item | None:
    """A comment as a reply to its post, in ``question``'s thread; None without ids or time."""
    comment, post = post_id(raw.get("comment_id")), post_id(raw.get("post_id"))
    created = _created(raw)
    if comment is None or post is None or created is None:
        return None
    return Item(
        external_id=f"c{comment}",
        kind="reply",
        thread_id=str(question),
        parent_id=str(post),
        created_at=created,
        author=author_of(raw.get("owner")),
        text=_text(raw, "body"),
        text_is_html=True,
        url=_link(raw),
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One of the three streams a poll walks."""

    name: str
    """Its path under the API root, its cursor key and its backoff method."""
    id_field: str
    ref_field: str | None
    """The post it belongs to: ``question_id`` of an answer, ``post_id`` of a comment."""
    prefix: str = ""
    """Of its items' external ids (comments have ids of their own)."""

    def item(self, raw: Mapping[str, Any], *, question: int) -> Item | None:
        if self.name == "questions":
            return question_item(raw)
        if self.name == "answers":
            return answer_item(raw)
        return comment_item(raw, question=question)

    def problem(self, raw: Mapping[str, Any]) -> str | None:
        """Why ``raw`` cannot be placed at all (``missing_field``/``bad_id``), or None."""
        for key in (self.id_field, self.ref_field):
            if key is None:
                continue
            value = raw.get(key)
            if value is None:
                return "missing_field"
            if post_id(value) is None:
                return "bad_id"
        return "missing_field" if raw.get("creation_date") is None else None


QUESTIONS = Endpoint("questions", "question_id", None)
ANSWERS = Endpoint("answers", "answer_id", "question_id")
COMMENTS = Endpoint("comments", "comment_id", "post_id", prefix="c")
ENDPOINTS = (QUESTIONS, ANSWERS, COMMENTS)
"""Questions first, so that their answers and comments find them in the caches."""


# ---------------------------------------------------------------- process-wide state


class KnownScopes:
    """A bounded LRU of (scope, question id) -> whether the question carries the tags."""

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._known: OrderedDict[tuple[str, int], bool] = OrderedDict()

    def get(self, scope: str, question: int) -> bool | None:
        known = self._known.get((scope, question))
        if known is not None:
            self._known.move_to_end((scope, question))
        return known

    def put(self, scope: str, question: int, *, inside: bool) -> None:
        self._known[(scope, question)] = inside
        self._known.move_to_end((scope, question))
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def clear(self) -> None:
        self._known.clear()


class MethodBackoffs:
    """When each API method may be called again (Unix seconds), per API root: the API's
    ``backoff`` applies to the method just called, for everyone calling from this IP."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._until: dict[tuple[str, str], float] = {}

    def note(self, api: str, method: str, seconds: float) -> None:
        """The API asked not to call ``method`` for ``seconds`` (at most an hour)."""
        self.restore(api, method, self.clock() + server_wait(seconds))

    def restore(self, api: str, method: str, until: float) -> None:
        """A wait remembered in a cursor; never more than an hour from now."""
        until = min(until, self.clock() + MAX_SERVER_WAIT)
        if until > self._until.get((api, method), 0.0):
            self._until[(api, method)] = until

    def wait(self, api: str, method: str) -> float:
        """Seconds before ``method`` may be called again (0 when it may now)."""
        return max(0.0, self._until.get((api, method), 0.0) - self.clock())

    def pending(self, api: str) -> dict[str, float]:
        now = self.clock()
        return {m: u for (a, m), u in self._until.items() if a == api and u > now}

    def clear(self) -> None:
        self._until.clear()


ROOT_CACHE: RootCache[int] = RootCache(capacity=50_000)
"""Post id -> question id, per API root and site: questions and answers seen or looked up."""
SCOPE_CACHE = KnownScopes(capacity=50_000)
"""Whether a question carries a community's tags, per API root, site and tags."""
BACKOFFS = MethodBackoffs()


# ---------------------------------------------------------------- cursor


def _seconds(value: object) -> int | None:
    number = _whole(value)
    return number if number is not None and number >= 0 else None


@dataclass(slots=True)
class _Mark:
    """How far one endpoint has been taken (see the module doc)."""

    last: int | None = None
    seen: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: object, *, now: int) -> _Mark:
        if not isinstance(raw, Mapping):
            return cls()
        last, seen = _seconds(raw.get("last")), raw.get("seen")
        pairs = seen.items() if isinstance(seen, Mapping) else ()
        return cls(
            last=None if last is None else min(last, now),
            seen={
                ident: moment
                for key, value in pairs
                if (ident := post_id(int(key) if str(key).isdigit() else None)) is not None
                and (moment := _seconds(value)) is not None
            },
        )

    def floor(self, since: int) -> int:
        """Where this poll's walk starts reading."""
        return since if self.last is None else self.last - OVERLAP_SECONDS

    def advanced(self, taken: Mapping[int, int], *, floor: int, now: int) -> _Mark:
        """The mark after taking ``taken`` (id -> creation time); never past ``now``."""
        start = floor if self.last is None else self.last
        last = min(max([start, *taken.values()]), now)
        recent = {k: t for k, t in {**self.seen, **taken}.items() if t >= last - OVERLAP_SECONDS}
        newest = sorted(recent.items(), key=lambda pair: pair[1])[-MAX_SEEN:]
        return _Mark(last=last, seen=dict(newest))

    def dump(self) -> dict[str, Any]:
        return {"last": self.last, "seen": {str(k): t for k, t in sorted(self.seen.items())}}


@dataclass(slots=True)
class _Walk:
    items: list[Item]
    mark: _Mark
    floor: int
    caught_up: bool


# ---------------------------------------------------------------- the adapter


class StackExchange(Source):
    """Questions, answers and comments of one Stack Exchange site (see the module doc)."""

    kind = "stackexchange"
    default_base_url = DEFAULT_BASE_URL
    earliest = EARLIEST
    rate_per_minute = 30.0
    max_pages = 10
    """Pages of each endpoint one poll may read (1000 items)."""
    max_lookups = 20
    """Thread and tag lookups one poll may make (2000 ids)."""
    root_cache: ClassVar[RootCache[int]] = ROOT_CACHE
    scope_cache: ClassVar[KnownScopes] = SCOPE_CACHE
    backoffs: ClassVar[MethodBackoffs] = BACKOFFS

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        if not isinstance(community, StackExchangeCommunity):
            raise TypeError(
                f"StackExchange needs a StackExchangeCommunity, not {type(community).__name__}"
            )
        super().__init__(community, settings=settings, client=client)
        self.site = community.site
        self.tags = frozenset(community.tagged or ())
        self.api = self.base_url.rstrip("/") + API_VERSION
        self.host = httpx.URL(self.api).host
        self.roots_key = f"{self.api}|{self.site}"
        self.scope_key = f"{self.roots_key}|{';'.join(sorted(self.tags))}"
        self._lookups_left = self.max_lookups
        self._quota_spent = False

    def walk_pending(self, cursor: Cursor) -> bool:
        return _seconds(cursor.get("behind_from")) is not None

    async def fetch(self, poll: PollInput) -> FetchResult:
        self._lookups_left, self._quota_spent = self.max_lookups, False
        self._restore_backoffs(poll.cursor)
        behind = _seconds(poll.cursor.get("behind_from"))
        items: list[Item] = []
        cursor: Cursor = {}
        caught_up = True
        for endpoint in ENDPOINTS:
            mark = _Mark.load(poll.cursor.get(endpoint.name), now=poll.now)
            walk = await self._walk(endpoint, mark, since=poll.since, now=poll.now)
            items += walk.items
            cursor[endpoint.name] = walk.mark.dump()
            if not walk.caught_up:  # from its floor on, all is taken once it catches up
                caught_up = False
                behind = walk.floor if behind is None else min(behind, walk.floor)
        if waits := self.backoffs.pending(self.api):
            cursor["backoff"] = waits
        if not caught_up:  # the newest items of a walk are unread: claim nothing yet
            cursor["behind_from"] = behind
            return FetchResult(items=items, cursor=cursor, complete=False, covered_from=poll.now)
        return FetchResult(items=items, cursor=cursor, complete=True, covered_from=behind)

    def _restore_backoffs(self, cursor: Cursor) -> None:
        waits = cursor.get("backoff")
        for method, until in waits.items() if isinstance(waits, Mapping) else ():
            if isinstance(until, int | float) and not isinstance(until, bool):
                self.backoffs.restore(self.api, str(method), float(until))

    # ------------------------------------------------------------ requests

    async def _call(self, method: str, path: str, params: Mapping[str, Any]) -> Listing | None:
        """One request to ``method``; None when this poll must not make it (its backoff
        lasts past what the poll may wait, or the day's quota is spent)."""
        if self._quota_spent:
            return None
        wait = self.backoffs.wait(self.api, method)
        if wait > 0:
            if wait > self.settings.http.max_retry_wait or time.monotonic() + wait > self.deadline:
                return None
            await self.backoffs.sleep(wait)
        url = self.api + path
        query = {**params, "site": self.site}
        if self.settings.stackexchange.key:
            query["key"] = self.settings.stackexchange.key
        try:
            response = await self.get(url, params=query, error_body=True)
        except HTTPStatusError as exc:
            error = api_error(
                _json_or_none(exc.body), host=exc.host, url=exc.url, http_status=exc.status
            )
            if error is None:
                raise
            raise error from exc
        listing = parse_listing(response.json(), host=self.host, url=url)
        if listing.quota_remaining is not None:
            self.client.note_remaining(self.host, listing.quota_remaining)
            self._quota_spent = listing.quota_remaining <= 0
        if listing.backoff is not None:
            self.backoffs.note(self.api, method, listing.backoff)
        return listing

    async def _lookup(
        self, kind: str, ids: Iterable[int]
    ) -> tuple[list[Mapping[str, Any]], set[int]]:
        """``/{kind}/{ids}`` for as many ids as the poll's lookups allow: the items found
        and the ids asked about (an id asked about and not found is not of that kind)."""
        wanted = list(dict.fromkeys(ids))
        found: list[Mapping[str, Any]] = []
        asked: set[int] = set()
        for start in range(0, len(wanted), PAGE_SIZE):
            if self._lookups_left <= 0 or self.out_of_time():
                break
            chunk = wanted[start : start + PAGE_SIZE]
            path = f"/{kind}/{';'.join(map(str, chunk))}"
            listing = await self._call(f"{kind}/{{ids}}", path, {"pagesize": PAGE_SIZE})
            if listing is None:
                break
            self._lookups_left -= 1
            found += listing.items
            asked.update(chunk)
        return found, asked

    # ------------------------------------------------------------ walks

    async def _walk(self, endpoint: Endpoint, mark: _Mark, *, since: int, now: int) -> _Walk:
        """Take ``endpoint``'s new items, oldest first (see the module doc)."""
        floor = mark.floor(since)
        taken: dict[int, int] = {}
        items: list[Item] = []
        fromdate, page = floor, 1
        caught_up = False
        params: dict[str, Any] = {"sort": "creation", "order": "asc", "pagesize": PAGE_SIZE}
        if endpoint is QUESTIONS and self.tags:
            params["tagged"] = ";".join(sorted(self.tags))
        for _ in range(self.max_pages):
            if self.out_of_time():
                break
            query = {**params, "fromdate": fromdate, "page": page, "filter": FILTER}
            listing = await self._call(endpoint.name, f"/{endpoint.name}", query)
            if listing is None:
                break
            if not await self._take(endpoint, listing.items, mark, taken, items):
                break  # an item whose thread is not known yet: it and the rest wait
            if not listing.has_more:
                caught_up = True
                break
            times = [t for raw in listing.items if (t := self._placed_time(raw)) is not None]
            newest = max(times, default=fromdate)
            # the next page starts at the newest second of this one (read again, not taken
            # twice); a page all of one second moves on by page number
            fromdate, page = (newest, 1) if newest > fromdate else (fromdate, page + 1)
        return _Walk(items, mark.advanced(taken, floor=floor, now=now), floor, caught_up)

    def _placed_time(self, raw: Mapping[str, Any]) -> int | None:
        created = _created(raw)
        return created if created is not None and self.intake.plausible_time(created) else None

    async def _take(
        self,
        endpoint: Endpoint,
        raws: list[Mapping[str, Any]],
        mark: _Mark,
        taken: dict[int, int],
        items: list[Item],
    ) -> bool:
        """Take the page's new items in creation order; False when it stopped at one whose
        thread or scope is not known yet (that one and those after it are not taken)."""
        fresh: list[tuple[int, Mapping[str, Any]]] = []
        for raw in raws:
            problem = endpoint.problem(raw)
            if problem is not None:  # named as its item would be: c<id> for a comment
                self.intake.reject(problem, f"{endpoint.prefix}{raw.get(endpoint.id_field)}")
                continue
            ident = post_id(raw.get(endpoint.id_field))
            if ident is not None and ident not in mark.seen and ident not in taken:
                fresh.append((ident, raw))
        fresh.sort(key=lambda pair: (self._placed_time(pair[1]) or MAX_ID, pair[0]))
        await self._resolve(endpoint, [raw for _, raw in fresh])
        for ident, raw in fresh:
            question = self._question_of(endpoint, raw)
            inside = None if question is None else self._in_scope(question)
            if question is None or inside is None:
                return False
            moment = self._placed_time(raw)
            if endpoint is not COMMENTS:
                self.root_cache.put(self.roots_key, ident, root=question)
            if inside:
                item = endpoint.item(raw, question=question)
                if item is None or (admitted := self.intake.admit(item)) is None:
                    continue  # rejected (counted by the intake): it moves nothing
                items.append(admitted)
            if moment is not None:
                taken[ident] = moment
        return True

    def _question_of(self, endpoint: Endpoint, raw: Mapping[str, Any]) -> int | None:
        if endpoint is not COMMENTS:
            return post_id(raw.get("question_id"))
        post = post_id(raw.get("post_id"))
        return None if post is None else self.root_cache.get(self.roots_key, post)

    def _in_scope(self, question: int) -> bool | None:
        if not self.tags:
            return True
        return self.scope_cache.get(self.scope_key, question)

    def _note_question(self, raw: Mapping[str, Any]) -> None:
        """A question seen whole (its tags): its thread and its scope."""
        question = post_id(raw.get("question_id"))
        if question is None:
            return
        self.root_cache.put(self.roots_key, question, root=question)
        tags = raw.get("tags")
        names = {t.lower() for t in tags if isinstance(t, str)} if isinstance(tags, list) else set()
        self.scope_cache.put(self.scope_key, question, inside=self.tags <= names)

    async def _resolve(self, endpoint: Endpoint, raws: list[Mapping[str, Any]]) -> None:
        """Look up what the caches do not know of ``raws``' threads and scopes."""
        if endpoint is QUESTIONS:
            for raw in raws:  # listed by the tagged walk: in scope
                question = post_id(raw.get("question_id"))
                if question is not None:
                    self.root_cache.put(self.roots_key, question, root=question)
                    self.scope_cache.put(self.scope_key, question, inside=True)
            return
        questions: list[int] = []
        if endpoint is COMMENTS:
            posts = [p for raw in raws if (p := post_id(raw.get("post_id"))) is not None]
            unknown = [p for p in posts if self.root_cache.get(self.roots_key, p) is None]
            found, asked = await self._lookup("answers", unknown)
            for answer in found:
                ident = post_id(answer.get("answer_id"))
                question = post_id(answer.get("question_id"))
                if ident is not None and question is not None:
                    self.root_cache.put(self.roots_key, ident, root=question)
            for post in asked:  # not an answer: a question (or gone)
                if self.root_cache.get(self.roots_key, post) is None:
                    if not self.tags:
                        self.root_cache.put(self.roots_key, post, root=post)
                    else:
                        questions.append(post)
            candidates = set(questions)
            posts = [p for p in posts if p not in candidates]
            questions += [
                q for p in posts if (q := self.root_cache.get(self.roots_key, p)) is not None
            ]
        else:
            questions = [q for raw in raws if (q := post_id(raw.get("question_id"))) is not None]
        if not self.tags:
            return
        unknown = [q for q in questions if self.scope_cache.get(self.scope_key, q) is None]
        found, asked = await self._lookup("questions", unknown)
        for raw in found:
            self._note_question(raw)
        for question in asked:  # not returned: deleted (or no question): out of scope
            if self.scope_cache.get(self.scope_key, question) is None:
                self.root_cache.put(self.roots_key, question, root=question)
                self.scope_cache.put(self.scope_key, question, inside=False)
