"""Discourse forums: every new post, from ``/posts.json``.

Why ``/posts.json`` alone: each of its posts carries ``topic_id``,
``topic_title``, ``post_number``, ``reply_to_post_number`` and
``category_id``, so one newest-first stream (50 posts a page, ids descending,
``?before=<id>`` for older ones) yields thread starts and replies alike. The
topic endpoints (``/latest.json`` then ``/t/{id}.json``) would cost one request
per bumped topic and hold only 20 posts inline, so a bumped mega-topic would be
fetched again and again; this adapter never fetches topics.

Identity: a post is ``"{topic_id}/{post_number}"``, the way Discourse itself
addresses posts (``/t/{slug}/{topic_id}/{post_number}``). So the thread start
is ``"{topic_id}/1"`` (which is also every post's ``thread_id``) and a reply's
parent (``reply_to_post_number``) is resolvable without knowing the parent's
database id. A post moved to another topic keeps its old identity here: it is
never fetched again, because its database id stays below the cursor.

Cursor: ``{"last_id": N}``: every post with database id <= N has been seen
(post ids grow with creation). A poll walks down from the newest post until a
page reaches N (or, on a first poll, a post older than ``poll.since``). A walk
is bounded to ``max_pages`` pages a poll; when it stops short, the cursor keeps
the unseen range as ``"pending": {"before", "top", "floor_time"}`` (ids in
``[before, top]`` seen, ids between ``last_id`` and ``before`` not yet), and
the next poll finishes that range first, then walks down from the newest post.
So a long first poll (``history_days`` on a busy forum) spreads over several
polls without a gap, at most ``max_pages * 50`` posts each.

Category filter (``category``: a slug or a numeric id): resolved once through
``/categories.json`` to the category and its subcategories, kept in the cursor
(``category``, ``category_ids``) so later polls need no extra request, and
applied to each post's ``category_id``; the walk itself still covers the whole
forum, so the request bound counts all of the forum's new posts.

Old Discourse versions paged ``/posts.json`` by id windows of 50 (short pages
before the end), so a short page is not taken as the end; an empty page is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from monitor.config import CommunityBase, DiscourseCommunity, Settings
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.http import PoliteClient
from monitor.sources.base import Cursor, FetchResult, Item, PollInput, Source

log = logging.getLogger(__name__)

PAGE_SIZE = 50
"""Posts per ``/posts.json`` page (Discourse's ``LatestPostsQuery::PAGE_SIZE``)."""

# Post types that are not community activity: 2 moderator action ("closed this
# topic" notices), 3 small action (system notes such as "split this topic" or
# "pinned"), 4 whisper (staff-only notes). Only 1 (regular) is people talking.
NOT_COMMUNITY_POST_TYPES = frozenset({2, 3, 4})


class UnknownCategory(HTTPStatusError):
    """The configured category is not on the forum (as a 404 for ``/c/{category}`` would say)."""

    def __init__(self, category: str, *, host: str, url: str) -> None:
        super().__init__(f"{host} has no category {category!r}", host=host, url=url, status=404)
        self.category = category


def parse_time(value: object) -> int | None:
    """UTC epoch seconds of a Discourse timestamp (``2019-11-15T17:42:13.554Z``), floored."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _text(raw: Mapping[str, Any]) -> tuple[str, bool]:
    """The markdown source when the endpoint sends it, else the rendered HTML."""
    source = raw.get("raw")
    if isinstance(source, str) and source:
        return source, False
    cooked = raw.get("cooked")
    return (cooked, True) if isinstance(cooked, str) else ("", False)


def is_deleted(raw: Mapping[str, Any]) -> bool:
    """Deleted by staff (``deleted_at``), withdrawn by its author, or hidden by flags."""
    return (
        bool(raw.get("deleted_at")) or raw.get("user_deleted") is True or raw.get("hidden") is True
    )


def post_item(raw: Mapping[str, Any], *, base_url: str) -> Item | None:
    """The item for one post of any endpoint, or ``None`` without topic, number or time."""
    topic_id = _positive_int(raw.get("topic_id"))
    number = _positive_int(raw.get("post_number"))
    created_at = parse_time(raw.get("created_at"))
    if topic_id is None or number is None or created_at is None:
        return None
    thread_id = f"{topic_id}/1"
    reply_to = _positive_int(raw.get("reply_to_post_number"))
    if number == 1:
        parent_id = None
    elif reply_to is not None and reply_to < number:
        parent_id = f"{topic_id}/{reply_to}"
    else:
        parent_id = thread_id
    title = raw.get("topic_title")
    username = raw.get("username")
    version = raw.get("version")
    # updated_at also moves on rebakes and grace-period edits; version counts real revisions
    edited = isinstance(version, int) and version > 1
    slug = raw.get("topic_slug")
    path = f"/t/{slug}/{topic_id}/{number}" if isinstance(slug, str) and slug else None
    text, text_is_html = _text(raw)
    return Item(
        external_id=f"{topic_id}/{number}",
        kind="thread" if number == 1 else "reply",
        thread_id=thread_id,
        parent_id=parent_id,
        created_at=created_at,
        author=username if isinstance(username, str) and username else None,
        title=title if number == 1 and isinstance(title, str) else "",
        text=text,
        text_is_html=text_is_html,
        url=base_url + (path or f"/t/{topic_id}/{number}"),
        edited_at=parse_time(raw.get("updated_at")) if edited else None,
        deleted=is_deleted(raw),
    )


@dataclass
class _Walk:
    """What one walk down the post stream saw."""

    finished: bool = False
    lowest: int | None = None
    highest: int | None = None
    validators: dict[str, str] | None = None
    not_modified: bool = False


@dataclass
class _Run:
    """One poll's budget and findings, shared by its walks."""

    pages_left: int
    base_url: str
    category_ids: frozenset[int] | None
    items: list[Item] = field(default_factory=list)
    skipped: int = 0

    def take(self, raw: Mapping[str, Any]) -> None:
        if raw.get("post_type") in NOT_COMMUNITY_POST_TYPES:
            return  # see NOT_COMMUNITY_POST_TYPES: not people talking
        if self.category_ids is not None and raw.get("category_id") not in self.category_ids:
            return
        item = post_item(raw, base_url=self.base_url)
        if item is None:
            self.skipped += 1
        else:
            self.items.append(item)


@dataclass
class _Position:
    """The cursor, parsed: see the module docstring."""

    last_id: int | None = None
    pending: dict[str, Any] | None = None

    @classmethod
    def load(cls, cursor: Cursor) -> _Position:
        pending = cursor.get("pending")
        valid = isinstance(pending, dict) and _positive_int(pending.get("before")) is not None
        return cls(
            last_id=cursor.get("last_id") if isinstance(cursor.get("last_id"), int) else None,
            pending=dict(pending) if valid and isinstance(pending, dict) else None,
        )

    def dump(self) -> Cursor:
        cursor: Cursor = {"last_id": self.last_id}
        if self.pending is not None:
            cursor["pending"] = self.pending
        return cursor


class Discourse(Source):
    """New posts of one Discourse forum (``base_url`` is the forum root)."""

    kind = "discourse"
    rate_per_minute = 60.0
    max_pages = 20
    """Pages one poll may fetch (1000 posts); a longer backlog continues next poll."""

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        if not isinstance(community, DiscourseCommunity):
            raise TypeError(f"Discourse needs a DiscourseCommunity, not {type(community).__name__}")
        super().__init__(community, settings=settings, client=client)
        self.forum = community

    def credentials(self) -> dict[str, str]:
        key = self.settings.discourse.api_key
        if not key:
            return {}
        headers = {"Api-Key": key}
        if self.forum.api_username:
            headers["Api-Username"] = self.forum.api_username
        return headers

    def walk_pending(self, cursor: Cursor) -> bool:
        return _Position.load(cursor).pending is not None

    async def fetch(self, poll: PollInput) -> FetchResult:
        position = _Position.load(poll.cursor)
        run = _Run(self.max_pages, self.base_url, await self._category_ids(poll.cursor))
        validators = dict(poll.validators)
        if position.pending is not None:
            validators = {}  # a 304 on the newest page would not cover the pending range
            if not await self._finish_pending(run, position):
                return self._result(run, position, validators)
        if run.pages_left == 0:
            return self._result(run, position, validators)
        return await self._walk_from_newest(run, position, validators, since=poll.since)

    async def _walk_from_newest(
        self, run: _Run, position: _Position, validators: dict[str, Any], *, since: int
    ) -> FetchResult:
        """Walk down from the newest post to ``last_id`` (or to ``since`` on a first poll)."""
        floor_time = since if position.last_id is None else None
        walk = await self._walk(
            run,
            before=None,
            floor_id=position.last_id,
            floor_time=floor_time,
            validators=validators,
        )
        if walk.not_modified:
            return self._result(run, position, validators, not_modified=True)
        if walk.finished:
            position.last_id = max(position.last_id or 0, walk.highest or 0)
        elif walk.lowest is not None:
            position.pending = {
                "before": walk.lowest,
                "top": walk.highest,
                "floor_time": floor_time,
            }
        return self._result(run, position, walk.validators or {})

    async def _finish_pending(self, run: _Run, position: _Position) -> bool:
        """Walk the range a cut-short poll left; True when it is done."""
        pending = position.pending or {}
        floor_time = pending.get("floor_time")
        walk = await self._walk(
            run,
            before=int(pending["before"]),
            floor_id=position.last_id,
            floor_time=floor_time if isinstance(floor_time, int) else None,
        )
        if not walk.finished:
            if walk.lowest is not None:
                position.pending = {**pending, "before": walk.lowest}
            return False
        top = pending.get("top")
        position.last_id = max(position.last_id or 0, top if isinstance(top, int) else 0)
        position.pending = None
        return True

    async def _walk(
        self,
        run: _Run,
        *,
        before: int | None,
        floor_id: int | None,
        floor_time: int | None,
        validators: Mapping[str, str] | None = None,
    ) -> _Walk:
        """Page down from ``before`` (or the newest post) to the floor, within the budget."""
        seen = _Walk()
        while run.pages_left > 0:
            run.pages_left -= 1
            params = {} if before is None else {"before": before}
            url = self.url("/posts.json")
            response = await self.get(url, params=params, validators=validators)
            if response.not_modified:
                seen.not_modified = seen.finished = True
                return seen
            if validators is not None:
                seen.validators = response.validators
                validators = None  # only the newest page is conditional
            posts = _latest_posts(response.json(), url=url)
            ids = [i for raw in posts if (i := _positive_int(raw.get("id"))) is not None]
            if not ids or (before is not None and min(ids) >= before):
                seen.finished = True  # the bottom of the forum (or a server ignoring before=)
                break
            seen.lowest = min(ids)
            seen.highest = max(seen.highest or 0, max(ids))
            if self._take_page(run, posts, floor_id=floor_id, floor_time=floor_time):
                seen.finished = True
                break
            before = seen.lowest
        return seen

    @staticmethod
    def _take_page(
        run: _Run, posts: list[Mapping[str, Any]], *, floor_id: int | None, floor_time: int | None
    ) -> bool:
        """Take the page's posts above the floor; True when the page reached the floor."""
        reached = False
        for raw in posts:
            post_id = _positive_int(raw.get("id"))
            created_at = parse_time(raw.get("created_at"))
            if post_id is None:
                run.skipped += 1
            elif floor_id is not None and post_id <= floor_id:
                reached = True
            elif floor_time is not None and created_at is not None and created_at < floor_time:
                reached = True
            else:
                run.take(raw)
        return reached

    def _result(
        self,
        run: _Run,
        position: _Position,
        validators: dict[str, Any],
        *,
        not_modified: bool = False,
    ) -> FetchResult:
        if run.skipped:
            log.debug("%s: skipped %d posts lacking an id or time", self.community.id, run.skipped)
        cursor = position.dump()
        if run.category_ids is not None:
            cursor["category"] = self.forum.category
            cursor["category_ids"] = sorted(run.category_ids)
        return FetchResult(
            items=run.items, cursor=cursor, validators=validators, not_modified=not_modified
        )

    async def _category_ids(self, cursor: Cursor) -> frozenset[int] | None:
        """The filter's category ids: from the cursor, else asked once of ``/categories.json``."""
        wanted = self.forum.category
        if wanted is None:
            return None
        cached = cursor.get("category_ids")
        if cursor.get("category") == wanted and isinstance(cached, list):
            return frozenset(i for i in cached if isinstance(i, int))
        url = self.url("/categories.json")
        body = await self.get_json(url, params={"include_subcategories": "true"})
        return resolve_category(body, wanted=wanted, url=url)


def _latest_posts(body: object, *, url: str) -> list[Mapping[str, Any]]:
    posts = body.get("latest_posts") if isinstance(body, dict) else None
    if not isinstance(posts, list):
        raise MalformedResponse(
            "posts.json body has no latest_posts list", host=httpx.URL(url).host, url=url
        )
    return [raw for raw in posts if isinstance(raw, dict)]


def _categories(body: object, *, url: str) -> list[Mapping[str, Any]]:
    """Every category ``/categories.json`` lists, subcategories included when it sends them."""
    listing = body.get("category_list") if isinstance(body, dict) else None
    top = listing.get("categories") if isinstance(listing, dict) else None
    if not isinstance(top, list):
        raise MalformedResponse(
            "categories.json body has no category_list.categories list",
            host=httpx.URL(url).host,
            url=url,
        )
    found: list[Mapping[str, Any]] = []
    for category in top:
        if isinstance(category, dict):
            found.append(category)
            subs = category.get("subcategory_list")
            found.extend(sub for sub in subs or [] if isinstance(sub, dict))
    return found


def _find_category(categories: list[Mapping[str, Any]], wanted: str) -> Mapping[str, Any] | None:
    for category in categories:
        if wanted.isdigit():
            if category.get("id") == int(wanted):
                return category
        elif str(category.get("slug", "")).lower() == wanted.lower():
            return category
    return None


def resolve_category(body: object, *, wanted: str, url: str) -> frozenset[int]:
    """Ids of category ``wanted`` (slug or id) and its subcategories."""
    category = _find_category(_categories(body, url=url), wanted)
    if category is None:
        if wanted.isdigit():
            return frozenset({int(wanted)})  # e.g. a subcategory the listing left out
        raise UnknownCategory(wanted, host=httpx.URL(url).host, url=url)
    ids = {category["id"]} if isinstance(category.get("id"), int) else set()
    ids.update(sub for sub in category.get("subcategory_ids") or [] if isinstance(sub, int))
    for sub in category.get("subcategory_list") or []:
        if isinstance(sub, dict) and isinstance(sub.get("id"), int):
            ids.add(sub["id"])
    return frozenset(ids)
