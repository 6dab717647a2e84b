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

Cursor: ``{"last_id": N, "last_time": T}``: every post with database id <= N
*and* created at or before T has been seen (or was older than a first poll
reaches). Post ids grow with creation, so normally the time adds nothing; it is
there so that one post of a huge id cannot put every later post behind the
cursor: a post with an id <= N but created after T is new (ingest upserts, so
reporting a stored post again costs nothing). T is the newest creation time
seen, never past the poll's clock. (With a huge id in the cursor, times alone
decide: a post dated at or before T that is listed only after the poll, a race
of about a second, is missed.) A poll walks down from the newest post until
the lowest post of a page lies below the floor (or, on a first poll, is older
than ``poll.since``); the lowest, because a post of a huge id is listed first.
A walk is bounded to ``max_pages`` pages a poll; when it stops short, the cursor
keeps the unseen range as ``"pending": {"before", "top", "top_time",
"floor_time"}`` (ids in ``[before, top]`` seen, ids between the floor and
``before`` not yet), and the next poll finishes that range first, then walks
down from the newest post. So a long first poll (``history_days`` on a busy
forum) spreads over several polls without a gap, at most ``max_pages * 50``
posts each. A cursor without ``last_time`` (or a range without ``top_time``),
as written before they existed, is read by ids alone until a walk has seen
the posts it needs to set it.

Coverage: a poll claims ``[c, now]`` only when every post created since ``c``
has been fetched by it or by the polls whose walk it continues (see
``FetchResult``). A walk from the newest post that reaches the floor is
complete. One cut short at ``max_pages`` says ``complete=False`` and covers from
the creation time of the lowest post it reached (kept or filtered out: it was
seen). A poll that works on the pending range never reaches the newest post,
so it claims nothing new (``covered_from`` = now: an empty span), even when it
finishes the range with no page left. The walk's start is kept as
``"vouch_from"``: ``since`` for a first poll, the old floor's ``last_time`` for a
backlog. The poll that finishes the range *and* then reaches the floor from
the newest post vouches from there; if that newest walk is cut short again,
the new range inherits ``vouch_from``. While it is set, ``walk_pending`` is true
(``backfill`` polls on) and no conditional request is made: the walk must see
the newest page itself. A range written before ``vouch_from`` existed vouches
from its ``floor_time`` (a first poll), or not at all (a backlog: then the
closing poll claims what any complete poll does, from the last success).

One bad post blinds nothing: only a post with a Discourse id (an integer up to
``MAX_ID``) and a time the poll's ``Intake`` finds plausible may move the cursor
or end a walk. Any other post this community would keep is counted as rejected
(``missing_field``, ``bad_id``, ``bad_time``), once, and the rest of its page is
kept.

Category filter (``category``: a slug or a numeric id): resolved once through
``/categories.json`` to the category and its subcategories, kept in the cursor
(``category``, ``category_ids``) so later polls need no extra request, and
applied to each post's ``category_id``; the walk itself still covers the whole
forum, so the request bound counts all of the forum's new posts.

Old Discourse versions paged ``/posts.json`` by id windows of 50 (short pages
before the end), so a short page is not taken as the end; an empty page is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from monitor.config import CommunityBase, DiscourseCommunity, Settings
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.http import PoliteClient
from monitor.sources.base import Cursor, FetchResult, Intake, Item, PollInput, Source

PAGE_SIZE = 50
"""Posts per ``/posts.json`` page (Discourse's ``LatestPostsQuery::PAGE_SIZE``)."""

# Post types that are not community activity: 2 moderator action ("closed this
# topic" notices), 3 small action (system notes such as "split this topic" or
# "pinned"), 4 whisper (staff-only notes). Only 1 (regular) is people talking.
NOT_COMMUNITY_POST_TYPES = frozenset({2, 3, 4})

MAX_ID = 2**53
"""No Discourse id is larger: its JavaScript client holds ids as doubles, which cannot
address them, so a larger one is taken for a broken post (``bad_id``), not a new one."""


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


def discourse_id(value: object) -> int | None:
    """A post, topic or post number id as Discourse hands them out: an integer in
    ``1..MAX_ID``; None for anything else (floats, NaN, strings, booleans)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
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
    topic_id = discourse_id(raw.get("topic_id"))
    number = discourse_id(raw.get("post_number"))
    created_at = parse_time(raw.get("created_at"))
    if topic_id is None or number is None or created_at is None:
        return None
    thread_id = f"{topic_id}/1"
    reply_to = discourse_id(raw.get("reply_to_post_number"))
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


def post_problem(raw: Mapping[str, Any]) -> str | None:
    """Why ``raw`` cannot become an item (a reason of ``REJECTION_REASONS``), or None."""
    for key in ("id", "topic_id", "post_number"):
        value = raw.get(key)
        if value is None:
            return "missing_field"
        if discourse_id(value) is None:
            return "bad_id"
    created_at = raw.get("created_at")
    if created_at is None:
        return "missing_field"
    return "bad_time" if parse_time(created_at) is None else None


def _label(raw: Mapping[str, Any]) -> str:
    """How a post that cannot become an item is named in the log (and counted once)."""
    return f"{raw.get('topic_id')}/{raw.get('post_number')} (id {raw.get('id')})"


def _latest(*times: int | None, cap: int) -> int | None:
    """The latest of ``times`` (None when all are), but never past ``cap``."""
    known = [t for t in times if t is not None]
    return min(max(known), cap) if known else None


@dataclass(frozen=True)
class _Floor:
    """Where a walk down the stream stops: posts seen before, or older than ``floor_time``."""

    last_id: int | None
    last_time: int | None
    floor_time: int | None = None

    def below(self, post_id: int, created_at: int) -> bool:
        """Whether the post was seen before (or is older than a first poll reaches)."""
        if self.floor_time is not None and created_at < self.floor_time:
            return True
        if self.last_id is None or post_id > self.last_id:
            return False
        # a cursor without last_time (written before it existed) vouches by id alone
        return self.last_time is None or created_at <= self.last_time


@dataclass
class _Walk:
    """What one walk down the post stream saw."""

    finished: bool = False
    lowest: int | None = None
    """The lowest id on the pages walked: the next page is the one ``before`` it."""
    highest: int | None = None
    """The highest id of a placed post (a Discourse id and a plausible time)."""
    newest_time: int | None = None
    """The latest creation time of a placed post."""
    bottom_time: int | None = None
    """Creation time of the lowest placed post reached: every post from then on is seen."""
    validators: dict[str, str] | None = None
    not_modified: bool = False

    def mark(self, post_id: int, created_at: int) -> None:
        self.highest = max(self.highest or 0, post_id)
        self.newest_time = (
            created_at if self.newest_time is None else max(self.newest_time, created_at)
        )


@dataclass
class _Run:
    """One poll's budget and findings, shared by its walks."""

    pages_left: int
    base_url: str
    category_ids: frozenset[int] | None
    intake: Intake
    items: list[Item] = field(default_factory=list)

    def place(self, raw: Mapping[str, Any]) -> tuple[int, int] | None:
        """(id, creation time) of a post whose id and time can both be trusted to place
        it in the stream; only such a post may move the cursor."""
        post_id = discourse_id(raw.get("id"))
        created_at = parse_time(raw.get("created_at"))
        if post_id is None or created_at is None or not self.intake.plausible_time(created_at):
            return None
        return post_id, created_at

    def item(self, raw: Mapping[str, Any]) -> Item | None:
        """The item of a post this community keeps, through the intake; a post it would
        keep but cannot normalize is counted as rejected."""
        if raw.get("post_type") in NOT_COMMUNITY_POST_TYPES:
            return None  # see NOT_COMMUNITY_POST_TYPES: not people talking
        if self.category_ids is not None and raw.get("category_id") not in self.category_ids:
            return None
        problem = post_problem(raw)
        if problem is not None:
            self.intake.reject(problem, _label(raw))
            return None
        item = post_item(raw, base_url=self.base_url)
        return None if item is None else self.intake.admit(item)


@dataclass
class _Position:
    """The cursor, parsed: see the module docstring."""

    last_id: int | None = None
    last_time: int | None = None
    pending: dict[str, Any] | None = None
    vouch_from: int | None = None
    """Where the walk under way began to be complete: the poll that ends it vouches from
    here (None when no walk is under way, or it began on a cursor without last_time)."""

    @classmethod
    def load(cls, cursor: Cursor) -> _Position:
        pending = cursor.get("pending")
        valid = isinstance(pending, dict) and discourse_id(pending.get("before")) is not None
        position = cls(
            last_id=_count(cursor.get("last_id")),
            last_time=_count(cursor.get("last_time")),
            pending=dict(pending) if valid and isinstance(pending, dict) else None,
            vouch_from=_count(cursor.get("vouch_from")),
        )
        if position.pending is not None and position.vouch_from is None:
            # a first poll's range written before vouch_from existed: it reaches floor_time
            position.vouch_from = _count(position.pending.get("floor_time"))
        return position

    @property
    def walking(self) -> bool:
        """Whether a walk spread over several polls has yet to catch up with the newest post."""
        return self.pending is not None or self.vouch_from is not None

    def floor(self, *, floor_time: int | None = None) -> _Floor:
        return _Floor(self.last_id, self.last_time, floor_time)

    def dump(self) -> Cursor:
        cursor: Cursor = {"last_id": self.last_id}
        if self.last_time is not None:
            cursor["last_time"] = self.last_time
        if self.pending is not None:
            cursor["pending"] = self.pending
        if self.vouch_from is not None:
            cursor["vouch_from"] = self.vouch_from
        return cursor


def _count(value: object) -> int | None:
    """A whole number from a stored cursor (None when it is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


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
        return _Position.load(cursor).walking

    async def fetch(self, poll: PollInput) -> FetchResult:
        position = _Position.load(poll.cursor)
        category_ids = await self._category_ids(poll.cursor)
        run = _Run(self.max_pages, self.base_url, category_ids, self.intake)
        validators = dict(poll.validators)
        if position.walking:
            validators = {}  # the walk must see the newest page itself, not hear "unchanged"
        if position.pending is not None:
            await self._finish_pending(run, position, now=poll.now)
        if position.pending is not None or run.pages_left == 0 or self.out_of_time():
            # posts newer than the walk's top are not fetched yet: nothing new is claimed
            return self._result(run, position, validators, complete=False, covered_from=poll.now)
        return await self._walk_from_newest(run, position, validators, poll=poll)

    async def _walk_from_newest(
        self, run: _Run, position: _Position, validators: dict[str, Any], *, poll: PollInput
    ) -> FetchResult:
        """Walk down from the newest post to the floor (or to ``since`` on a first poll)."""
        floor = position.floor(floor_time=poll.since if position.last_id is None else None)
        walk = await self._walk(run, before=None, floor=floor, validators=validators)
        if walk.not_modified:
            return self._result(run, position, validators, not_modified=True, complete=True)
        if walk.finished:
            position.last_id = max(position.last_id or 0, walk.highest or 0)
            position.last_time = _latest(position.last_time, walk.newest_time, cap=poll.now)
            # caught up: a walk spread over polls is complete from where it began
            vouch, position.vouch_from = position.vouch_from, None
            validators = walk.validators or {}
            return self._result(run, position, validators, complete=True, covered_from=vouch)
        if walk.lowest is None:  # the poll's deadline came before the first page
            return self._result(run, position, validators, complete=False, covered_from=poll.now)
        if position.vouch_from is None:  # a walk begins: it will be complete from its floor
            first = floor.floor_time is not None
            position.vouch_from = floor.floor_time if first else position.last_time
        position.pending = {
            "before": walk.lowest,
            "top": walk.highest,
            "top_time": walk.newest_time,  # capped when it becomes last_time
            "floor_time": floor.floor_time,
        }
        # cut short: seen is everything from the lowest post reached up, nothing below
        covered_from = poll.now if walk.bottom_time is None else walk.bottom_time
        validators = walk.validators or {}
        return self._result(run, position, validators, complete=False, covered_from=covered_from)

    async def _finish_pending(self, run: _Run, position: _Position, *, now: int) -> None:
        """Walk the range a cut-short poll left; ``pending`` is cleared when it is done."""
        pending = position.pending or {}
        floor_time, top, top_time = (pending.get(k) for k in ("floor_time", "top", "top_time"))
        walk = await self._walk(
            run,
            before=int(pending["before"]),
            floor=position.floor(floor_time=floor_time if isinstance(floor_time, int) else None),
        )
        if not walk.finished:
            if walk.lowest is not None:
                position.pending = {**pending, "before": walk.lowest}
            return
        position.last_id = max(position.last_id or 0, top if isinstance(top, int) else 0)
        if isinstance(top_time, int):  # a range written before top_time existed leaves it be
            position.last_time = _latest(position.last_time, top_time, cap=now)
        position.pending = None

    async def _walk(
        self,
        run: _Run,
        *,
        before: int | None,
        floor: _Floor,
        validators: Mapping[str, str] | None = None,
    ) -> _Walk:
        """Page down from ``before`` (or the newest post) to the floor, within the budget."""
        seen = _Walk()
        while run.pages_left > 0 and not self.out_of_time():
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
            ids = [i for raw in posts if (i := discourse_id(raw.get("id"))) is not None]
            if not ids or (before is not None and min(ids) >= before):
                seen.finished = True  # the bottom of the forum (or a server ignoring before=)
                break
            seen.lowest = min(ids)
            if self._take_page(run, posts, floor=floor, walk=seen):
                seen.finished = True
                break
            before = seen.lowest
        return seen

    @staticmethod
    def _take_page(
        run: _Run, posts: list[Mapping[str, Any]], *, floor: _Floor, walk: _Walk
    ) -> bool:
        """Take the page's posts above the floor; True when the page reached the floor.

        The page reaches the floor when its lowest placed post lies below it, so one
        post of a huge id (listed first, above every other) cannot end a walk early.
        """
        bottom: tuple[int, int] | None = None
        for raw in posts:
            spot = run.place(raw)
            if spot is None:
                run.item(raw)  # not placeable, so not normalizable either: counted, never kept
                continue
            walk.mark(*spot)
            bottom = spot if bottom is None else min(bottom, spot)
            if not floor.below(*spot) and (item := run.item(raw)) is not None:
                run.items.append(item)
        if bottom is None:
            return False
        walk.bottom_time = bottom[1]
        return floor.below(*bottom)

    def _result(
        self,
        run: _Run,
        position: _Position,
        validators: dict[str, Any],
        *,
        complete: bool,
        covered_from: int | None = None,
        not_modified: bool = False,
    ) -> FetchResult:
        """The poll's result; ``complete`` and ``covered_from`` as ``FetchResult`` has them."""
        cursor = position.dump()
        if run.category_ids is not None:
            cursor["category"] = self.forum.category
            cursor["category_ids"] = sorted(run.category_ids)
        return FetchResult(
            items=run.items,
            cursor=cursor,
            validators=validators,
            not_modified=not_modified,
            complete=complete,
            covered_from=covered_from,
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
