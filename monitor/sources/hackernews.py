"""Hacker News: the whole site through the Firebase API, or a keyword scope through Algolia.

**Whole site** (``query`` unset): the Firebase v0 API at ``base_url``
(default https://hacker-news.firebaseio.com). HN hands out ids in creation
order to stories, comments, jobs, polls and poll options alike, so walking the
ids from the cursor up to ``/v0/maxitem.json`` sees every new post, comments
included (which ``/v0/newstories.json`` would miss).

- Cursor ``{"next_id": N}``: every id below N has been fetched. A poll walks at
  most ``max_items_per_poll`` (500) ids, oldest first, and the next poll goes on
  from the id after the last one that answered, so no id is ever skipped: ids
  at the top of a walk that answer ``null`` (not readable yet, or beyond the
  real newest item when ``maxitem`` lies) are asked again next poll. A walk of
  more than ``NULL_WALK_LIMIT`` ids of which none answers says ``maxitem``
  points past every item: a malformed answer, not an idle forum. HN makes
  roughly 10-15k items a day (about 50 per five minutes): the bound matters only
  while catching up.
- A first poll cannot walk 30 days of HN (about 400k requests). It fetches the
  newest ``max_items_per_poll`` ids and keeps those created at or after
  ``since``; older history is not fetched in this mode (a keyword scope can
  reach it through Algolia), and the result says ``complete=False`` unless the
  walk got back to ``since``. A catching-up walk that stops short of maxitem is
  ``complete=False`` too.
- Cost: an idle poll is 1 request (maxitem); K new ids cost 1 + K requests (one
  per item, ``item_concurrency`` = 8 at a time), plus parent fetches below.
  An id that answers ``null`` is skipped.
- Comments carry only ``parent``. Their thread (the root story) is found by
  walking parents through this poll's items, then a process-wide cache of
  id -> root (``ROOT_CACHE``, the 50k ids used last, keyed by API root), then by fetching
  missing ancestors a level at a time, at most ``max_parent_fetches`` (200) per
  poll. A comment whose root is still unknown gets the highest ancestor reached
  as its thread id (counted in a debug log line).
- Firebase documents no rate limit; the default of 1200 requests a minute
  (20/s) to its host is overridden by ``[http] rate_per_minute``.

**Keyword scope** (``query`` set): every story and comment matching the query,
from Algolia's ``/api/v1/search_by_date`` at ``search_base_url`` (default
https://hn.algolia.com), newest first, ``hits_per_page`` (100) a page.

- Cursor ``{"after": T, "seen": {objectID: created_at_i}}``: every hit created
  at or before T has been fetched. A poll asks for ``created_at_i > T - 600``:
  the overlap catches hits Algolia indexes a little late, and ``seen`` (ids of
  the overlap window) keeps them from being returned twice.
- A poll pages only until the results run out: an idle poll is 1 request, K new
  hits ``ceil(K / 100)`` (at least 1). It reads at most ``max_pages_per_poll``
  (10) pages; Algolia serves no more than 1000 hits per query anyway. When a poll
  stops before reaching T, the cursor keeps the unfetched gap as
  ``before``/``head`` (created_at_i <= ``before``, above T) and the next polls
  fill it, newest first, before moving T to ``head``. ``seen`` also keeps the
  ids of the second at ``before``, which the next poll asks for again.
- A first poll starts at T = ``since`` - 1 and so reaches back ``history_days``,
  across several polls when there are more than 1000 hits. A poll that leaves
  a gap says ``complete=False``.
- Algolia allows 10,000 requests an hour per IP; the default is 100 a minute.

**Bad items** (both modes): an item or hit without an id, a time or (comments)
a story is rejected as ``missing_field``; one dated before Hacker News existed
or in the future as ``bad_time`` by the poll's ``Intake``. Rejected items never
move a cursor, and neither cursor lies past the poll's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import httpx

from monitor.config import CommunityBase, HackerNewsCommunity, Settings
from monitor.errors import MalformedResponse
from monitor.http import PoliteClient
from monitor.sources.base import (
    Cursor,
    FetchResult,
    Item,
    PollInput,
    RootCache,
    Source,
    epoch_seconds,
)

log = logging.getLogger(__name__)

FIREBASE_URL = "https://hacker-news.firebaseio.com"
ALGOLIA_URL = "https://hn.algolia.com"
DISCUSSION_URL = "https://news.ycombinator.com/item?id="
THREAD_TYPES = frozenset({"story", "job", "poll"})
POST_TYPES = THREAD_TYPES | {"comment"}  # a "pollopt" is a poll's answer, not a post
SEARCH_TAGS = "(story,comment)"
ALGOLIA_RATE_PER_MINUTE = 100.0
_MAX_DEPTH = 10_000  # a parent chain longer than this is a cycle in bad data
EARLIEST = 1_160_000_000
"""2006-10-05, days before Hacker News's first item: no item is older."""
NULL_WALK_LIMIT = 100


def _int(value: object) -> int | None:
    """``value`` if it is a JSON integer (not a boolean), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def discussion_url(item_id: object) -> str:
    """The item's page on news.ycombinator.com (whatever API mirror it came from)."""
    return f"{DISCUSSION_URL}{item_id}"


ROOT_CACHE: RootCache[int] = RootCache(capacity=50_000)
"""Thread roots already resolved in this process, so a reply to a recent post costs no fetch."""


# ---------------------------------------------------------------- pure parsing


def item_from_firebase(raw: Mapping[str, Any], *, root_id: int | None = None) -> Item | None:
    """One Firebase item as an ``Item``; ``None`` for a poll option or an item lacking id/time/type.

    ``root_id`` is the comment's thread root; a comment without one falls back to its parent.
    """
    item_id, created, kind = _int(raw.get("id")), epoch_seconds(raw.get("time")), raw.get("type")
    if item_id is None or created is None or kind not in POST_TYPES:
        return None
    gone = bool(raw.get("deleted") or raw.get("dead"))
    common: dict[str, Any] = {
        "external_id": str(item_id),
        "created_at": created,
        "author": None if gone else _str(raw.get("by")),
        "text": "" if gone else _str(raw.get("text")) or "",
        "text_is_html": True,
        "url": discussion_url(item_id),
        "deleted": gone,
    }
    if kind in THREAD_TYPES:
        title = "" if gone else _str(raw.get("title")) or ""
        return Item(kind="thread", thread_id=str(item_id), title=title, **common)
    parent = _int(raw.get("parent"))
    if parent is None:
        return None
    thread = root_id if root_id is not None else parent
    return Item(kind="reply", thread_id=str(thread), parent_id=str(parent), **common)


def _hit_time(hit: Mapping[str, Any]) -> int | None:
    created = epoch_seconds(hit.get("created_at_i"))
    text = _str(hit.get("created_at"))
    if created is not None or text is None:
        return created
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def item_from_hit(hit: Mapping[str, Any]) -> Item | None:
    """One Algolia hit as an ``Item``; ``None`` when it lacks its id, time or story."""
    object_id, created = hit.get("objectID"), _hit_time(hit)
    raw_tags = hit.get("_tags")
    tags = [tag for tag in raw_tags if isinstance(tag, str)] if isinstance(raw_tags, list) else []
    if (_str(object_id) is None and _int(object_id) is None) or created is None:
        return None
    common: dict[str, Any] = {
        "external_id": str(object_id),
        "created_at": created,
        "author": _str(hit.get("author")),
        "text_is_html": True,
        "url": discussion_url(object_id),
    }
    if "comment" in tags:
        story, parent = _int(hit.get("story_id")), _int(hit.get("parent_id"))
        if story is None:
            return None
        return Item(
            kind="reply",
            thread_id=str(story),
            parent_id=None if parent is None else str(parent),
            text=_str(hit.get("comment_text")) or "",
            **common,
        )
    if THREAD_TYPES.intersection(tags):
        return Item(
            kind="thread",
            thread_id=str(object_id),
            title=_str(hit.get("title")) or "",
            text=_str(hit.get("story_text")) or "",
            **common,
        )
    return None


# ---------------------------------------------------------------- cursor states


@dataclass(slots=True)
class SearchCursor:
    """Where a keyword scope stands: all hits up to ``after`` fetched, except a gap."""

    after: int
    seen: dict[str, int] = field(default_factory=dict)
    before: int | None = None
    """When set, hits in (after, before] are still to fetch (a poll was cut short)."""
    head: int | None = None
    """The newest hit fetched while a gap is open; ``after`` moves here once it closes."""
    first: bool = False

    vouch: int | None = None
    """Set while a gap is open or not yet followed by a poll up to now: from here on,
    every hit is fetched once the gap is closed and a poll reaches now."""

    @classmethod
    def load(cls, cursor: Cursor, *, since: int, now: int) -> SearchCursor:
        after = _int(cursor.get("after"))
        # a first poll, a cursor left by whole-site mode, or one a future-dated hit pushed
        # past now (what came after that hit was never fetched: start over)
        if after is None or after > now:
            return cls(after=since - 1, first=True)
        seen = cursor.get("seen")
        pairs = seen.items() if isinstance(seen, dict) else ()
        return cls(
            after=after,
            seen={
                str(key): created for key, value in pairs if (created := _int(value)) is not None
            },
            before=_int(cursor.get("before")),
            head=_int(cursor.get("head")),
            vouch=_int(cursor.get("vouch")),
        )

    def filters(self, *, overlap: int) -> list[str]:
        if self.before is not None:
            return [f"created_at_i>{self.after}", f"created_at_i<={self.before}"]
        lower = self.after if self.first else self.after - overlap
        return [f"created_at_i>{lower}"]


# ---------------------------------------------------------------- the adapter


class HackerNews(Source):
    """Hacker News, whole site (Firebase) or a keyword scope (Algolia); see the module doc."""

    kind = "hackernews"
    default_base_url = FIREBASE_URL
    earliest = EARLIEST
    rate_per_minute = 1200.0

    @classmethod
    def author_namespace(cls, community: CommunityBase) -> str | None:
        """All of Hacker News (the Firebase and the Algolia API name the same accounts)."""
        return "hackernews"

    root_cache: ClassVar[RootCache[int]] = ROOT_CACHE

    max_items_per_poll = 500
    item_concurrency = 8
    concurrent_requests = item_concurrency
    max_parent_fetches = 200
    hits_per_page = 100
    max_pages_per_poll = 10
    overlap_seconds = 600
    max_seen = 2000

    @classmethod
    def host_for(cls, community: CommunityBase, settings: Settings) -> str:
        if isinstance(community, HackerNewsCommunity) and community.query:
            return httpx.URL(community.search_base_url or ALGOLIA_URL).host
        return super().host_for(community, settings)

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        if not isinstance(community, HackerNewsCommunity):
            raise TypeError(f"HackerNews needs a HackerNewsCommunity, got {type(community)}")
        super().__init__(community, settings=settings, client=client)
        self.query = community.query
        self.search_url = (community.search_base_url or ALGOLIA_URL).rstrip("/")
        self.base_url = self.base_url.rstrip("/")

    def rate_for(self, host: str) -> float:
        configured = self.settings.http.rate_per_minute.get(host)
        if configured is not None:
            return configured
        if host == httpx.URL(self.search_url).host and self.query:
            return ALGOLIA_RATE_PER_MINUTE
        return self.rate_per_minute

    def walk_pending(self, cursor: Cursor) -> bool:
        """A gap left to fill, or a walk that has not yet caught up and vouched."""
        if self.query:
            return _int(cursor.get("before")) is not None or _int(cursor.get("vouch")) is not None
        return _int(cursor.get("behind_from")) is not None

    async def fetch(self, poll: PollInput) -> FetchResult:
        if self.query:
            return await self._fetch_search(poll)
        return await self._fetch_site(poll)

    def _malformed(self, url: str, what: str) -> MalformedResponse:
        host = httpx.URL(url).host
        return MalformedResponse(f"{host} sent {what}", host=host, url=url)

    # ------------------------------------------------------------ whole site

    async def _fetch_site(self, poll: PollInput) -> FetchResult:
        newest = await self._max_item()
        next_id = _int(poll.cursor.get("next_id"))
        first = next_id is None  # also when the cursor was left by keyword mode
        start = max(1, newest - self.max_items_per_poll + 1) if next_id is None else next_id
        end = min(newest, start + self.max_items_per_poll - 1)
        if end < start:
            return FetchResult(items=[], cursor={"next_id": max(start, newest + 1)})
        raws, unread = await self._fetch_items(range(start, end + 1))
        if unread:  # the deadline: the walk ends below the first id not asked for
            end = min(unread) - 1
            raws = {item_id: raw for item_id, raw in raws.items() if item_id <= end}
        if not raws and end - start + 1 > NULL_WALK_LIMIT:
            what = f"maxitem {newest}, but ids {start}-{end} are all null"
            raise self._malformed(self.url("/v0/maxitem.json"), what)
        roots = await self._resolve_roots(raws)
        admitted: list[Item] = []
        for item_id, raw in raws.items():
            item = item_from_firebase(raw, root_id=roots.get(item_id))
            if item is None:
                if raw.get("type") != "pollopt":  # a poll option is not a post
                    self.intake.reject("missing_field", item_id)
            elif (kept := self.intake.admit(item)) is not None:
                admitted.append(kept)
        items = [i for i in admitted if not first or i.created_at >= poll.since]
        answered = max(raws, default=start - 1)  # ids above it answered null: ask again
        cursor: Cursor = {"next_id": answered + 1}
        times = [item.created_at for item in admitted]
        # ids at the very top that answer null are seconds old: the walk still got there
        if end < newest:  # a walk oldest first, cut short: the newest items are unread
            behind = _int(poll.cursor.get("behind_from"))
            # ids grow with time: all created since the walk's first item is fetched once
            # it catches up (nothing was created between the last walk's end and it)
            if behind is None:  # a first poll keeps nothing before ``since``
                behind = min(times, default=poll.now)
                behind = max(behind, poll.since) if first else behind
            cursor["behind_from"] = behind
            return FetchResult(items=items, cursor=cursor, complete=False, covered_from=poll.now)
        reached = not first or start == 1 or min(times, default=poll.now) < poll.since
        return FetchResult(
            items=items,
            cursor=cursor,
            complete=reached,
            covered_from=_int(poll.cursor.get("behind_from")),
        )

    async def _max_item(self) -> int:
        url = self.url("/v0/maxitem.json")
        newest = _int(await self.get_json(url))
        if newest is None:
            raise self._malformed(url, "a maxitem that is not an integer")
        return newest

    async def _item(self, item_id: int) -> dict[str, Any] | None:
        url = self.url(f"/v0/item/{item_id}.json")
        raw = await self.get_json(url)
        if raw is not None and not isinstance(raw, dict):
            raise self._malformed(url, "an item that is neither an object nor null")
        return raw

    async def _fetch_items(self, ids: Iterable[int]) -> tuple[dict[int, dict[str, Any]], set[int]]:
        """Fetch ``ids`` a few at a time: the items (ids answering ``null`` left out), and
        the ids not asked for because the poll's deadline came first."""
        gate = asyncio.Semaphore(self.item_concurrency)
        unread: set[int] = set()

        async def one(item_id: int) -> dict[str, Any] | None:
            async with gate:
                if self.out_of_time():
                    unread.add(item_id)
                    return None
                return await self._item(item_id)

        wanted = list(ids)
        tasks = [asyncio.ensure_future(one(item_id)) for item_id in wanted]
        try:
            found = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one failure fails the poll: stop the rest of the walk
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return {item_id: raw for item_id, raw in zip(wanted, found, strict=True) if raw}, unread

    # ------------------------------------------------------------ thread roots

    def _walk(
        self, item_id: int, known: Mapping[int, Mapping[str, Any]]
    ) -> tuple[int | None, int | None, list[int]]:
        """(root, None, path) when the root is reachable, else (None, missing ancestor, path)."""
        path: list[int] = []
        current = item_id
        for _ in range(_MAX_DEPTH):
            cached = self.root_cache.get(self.base_url, current)
            if cached is not None:
                return cached, None, path
            raw = known.get(current)
            if raw is None:
                return None, current, path
            path.append(current)
            parent = _int(raw.get("parent"))
            if raw.get("type") != "comment" or parent is None:
                return current, None, path
            current = parent
        return current, None, path

    async def _resolve_roots(self, raws: Mapping[int, dict[str, Any]]) -> dict[int, int]:
        """Thread root of every comment in ``raws`` (see the module doc for the bound)."""
        known: dict[int, Mapping[str, Any]] = dict(raws)
        roots: dict[int, int] = {}
        pending = [i for i, raw in raws.items() if raw.get("type") in POST_TYPES]
        budget = self.max_parent_fetches
        dead_ends: set[int] = set()  # ancestors answering null: a guess, so never cached
        while pending:
            missing: dict[int, int] = {}
            for item_id in pending:
                root, gap, path = self._walk(item_id, known)
                if root is None and gap is not None:
                    missing[item_id] = gap
                    continue
                roots[item_id] = root if root is not None else item_id
                if roots[item_id] not in dead_ends:
                    for step in path:
                        self.root_cache.put(self.base_url, step, root=roots[item_id])
            wanted = sorted(set(missing.values()))[:budget]
            if not wanted:
                roots.update(missing)  # out of budget: the highest ancestor reached
                log.debug(
                    "hackernews %s: %d thread roots left unresolved",
                    self.community.id,
                    len(missing),
                )
                break
            budget -= len(wanted)
            fetched, _ = await self._fetch_items(wanted)  # not asked: as good as null
            for gap in wanted:  # an ancestor answering null ends its chain there
                if gap not in fetched:
                    dead_ends.add(gap)
                known[gap] = fetched.get(gap) or {"id": gap}
            pending = list(missing)
        return roots

    # ------------------------------------------------------------ keyword scope

    async def _fetch_search(self, poll: PollInput) -> FetchResult:
        state = SearchCursor.load(poll.cursor, since=poll.since, now=poll.now)
        hits, complete = await self._search(state.filters(overlap=self.overlap_seconds))
        parsed: list[Item] = []
        for hit in hits:
            item = item_from_hit(hit)
            if item is None:
                self.intake.reject("missing_field", hit.get("objectID"))
            elif (admitted := self.intake.admit(item)) is not None:
                parsed.append(admitted)
        fresh = [item for item in parsed if item.external_id not in state.seen]
        cursor = self._next_search_cursor(state, parsed, complete, now=poll.now)
        filling = state.before is not None
        if filling or not complete:
            # nothing newer than the gap was asked for (or the poll stopped above it):
            # vouch later, from where the first cut-short poll left off
            default = state.after + 1 if state.first else state.after
            cursor["vouch"] = state.vouch if state.vouch is not None else default
            covered_from = poll.now if filling else None  # a cut poll: from its oldest hit
            return FetchResult(fresh, cursor, complete=False, covered_from=covered_from)
        return FetchResult(fresh, cursor, complete=True, covered_from=state.vouch)

    async def _search(self, filters: Sequence[str]) -> tuple[list[dict[str, Any]], bool]:
        """Page newest-first through the hits; complete is False when the poll stopped early."""
        url = self.search_url + "/api/v1/search_by_date"
        collected: list[dict[str, Any]] = []
        for page in range(self.max_pages_per_poll):
            if page and self.out_of_time():
                break  # the poll's deadline: what is fetched so far is kept
            params = {
                "query": self.query,
                "tags": SEARCH_TAGS,
                "numericFilters": ",".join(filters),
                "hitsPerPage": self.hits_per_page,
                "page": page,
            }
            hits, pages, total = self._search_page(url, await self.get_json(url, params=params))
            collected.extend(hit for hit in hits if isinstance(hit, dict))
            if len(hits) < self.hits_per_page or page + 1 >= pages:
                return collected, total <= page * self.hits_per_page + len(hits)
        return collected, False

    def _search_page(self, url: str, body: Any) -> tuple[list[Any], int, int]:
        if not isinstance(body, dict):
            raise self._malformed(url, "a search answer that is not an object")
        hits, pages, total = body.get("hits"), _int(body.get("nbPages")), _int(body.get("nbHits"))
        if not isinstance(hits, list) or pages is None or total is None:
            raise self._malformed(url, "a search answer without hits/nbPages/nbHits")
        return hits, pages, total

    def _next_search_cursor(
        self, state: SearchCursor, parsed: list[Item], complete: bool, *, now: int
    ) -> Cursor:
        # an admitted hit may lie a little in the future; the cursor never does
        times = [min(item.created_at, now) for item in parsed]
        after, before, head = state.after, state.before, state.head
        if not complete and not times:
            host = httpx.URL(self.search_url).host
            raise MalformedResponse(f"{host} stopped paging without a usable hit", host=host)
        if not complete:  # keep (after, oldest fetched] as the gap to fill next
            oldest = min(times)
            before = oldest if before is None or oldest < before else oldest - 1
            head = head if head is not None else max([after, *times])
        if complete and before is None:
            after = max([after, *times])
        elif complete or (before is not None and before <= after):
            after, before, head = max(after, head or after), None, None
        top = head if head is not None else after
        seen = {**state.seen, **{item.external_id: item.created_at for item in parsed}}
        recent = sorted(
            (
                (key, created)
                for key, created in seen.items()
                # the second at ``before`` is asked for again: remember what it held
                if created > top - self.overlap_seconds or created == before
            ),
            key=lambda pair: pair[1],
        )[-self.max_seen :]
        cursor: Cursor = {"after": after, "seen": dict(recent)}
        if before is not None:
            cursor.update(before=before, head=head)
        return cursor
