"""Lemmy: one community's new posts and comments, from an instance's ``/api/v3``.

Endpoints, at ``base_url`` (the instance): ``/api/v3/post/list`` (posts, kind
``thread``) and ``/api/v3/comment/list`` (comments, kind ``reply``), both with
``community_name`` (``name`` for a community of the instance itself,
``name@host`` for a federated one), ``sort=New`` and ``limit=50`` (Lemmy's
maximum); posts with ``show_nsfw=true`` too, since an anonymous listing hides
NSFW posts and they are activity like any other. Both list newest first by
``published``; Lemmy puts a community's featured (pinned) posts before all
others, so those never decide how far a walk has come.

Paging, per list: after the first page a walk goes on with ``page_cursor`` when
the instance offers one (Lemmy 0.19 sends ``next_page`` with every post page: a
keyset cursor, so posts arriving or leaving between two requests neither
repeat nor hide any), else with ``page`` (comments on 0.19, both lists on 0.18
and on 1.0's v3 layer). ``page`` is an offset, ``limit * (page - 1)``, over a
listing that moves: a new item arriving between two requests pushes the rest
down and the next page repeats items (dropped by id here, and ingest upserts
anyway), but an item leaving the listing above the page boundary (a post
deleted or removed, a comment purged) pulls the rest up, and the item that
moved across the boundary is never listed. So offset pages overlap: each next
page starts a few items above where the last one ended (``offset_windows``: the
page and limit are chosen so; pages 1-10 read items 0-49, 49-97, 96-143,
141-187, 184-229, 225-269, 264-307, 300-349, 343-391, 384-431). A page that
shares no item with the one before may have hidden one in between: the walk
goes on, but vouches only for what lies above that boundary. A full page of
items the walk has already read means the instance ignores ``page`` (1.0's v3
comment list answers its first page whatever ``page`` says; its post list
stops at page 10): the walk ends there, cut short.

Cursor, per list: ``{"newest": T, "seen": {external id: published}}``. T is the
newest ``published`` second read (never past the poll's clock) and ``seen``
holds the items of the ``OVERLAP_SECONDS`` (15 minutes) up to T. A walk reads
down until an item older than ``T - OVERLAP_SECONDS`` (the floor); an item at or
above the floor is new unless ``seen`` has it. The overlap is there because
Lemmy lists a federated item by the time it was published on its own
instance, so one that federates in late lands below items read before it; one
up to 15 minutes late is caught, a later one is not (as with Mastodon). While
fewer than 50 items fall in the overlap, an idle poll is 1 request per list and
K new items cost at most ``ceil(K / 50) + 1`` on cursor pages, and on offset
pages the same up to K = 349 and ``ceil(K / 48) + 1`` up to the page bound.

First poll (empty cursor): down to ``poll.since`` (``history_days``). Every walk
is bounded to ``MAX_PAGES`` pages a list (500 posts and 500 comments on cursor
pages, 432 on offset pages) and the poll's deadline; one cut short moves on (the
cursor takes the newest item) and does not come back for the rest.

Coverage: a walk that reached its floor (or the listing's end) vouches from
the floor. One cut short (by its page bound, the deadline, an instance that
does not page, or a page boundary that may have hidden an item) reads newest
first, so it vouches from the second after the oldest item it read above the
cut: every item of a later second is listed above that one (items in the same
second may lie below). A poll is complete when both walks are; otherwise it
vouches from the later of the two walks' starts, so a busy comment list cut
short never lets a quiet post list claim hours whose comments were not read.

Items: a post is ``post/{id}`` (its own thread), a comment ``comment/{id}`` in
thread ``post/{post_id}``; its parent is the comment before it in its ``path``
(``0.<ids>``), or the post. Ids are the instance's own (PostgreSQL integers,
``1..2**31-1``; anything else is ``bad_id``). Titles, bodies and comments are
Markdown. ``updated`` marks an edit. A deleted or removed item (``deleted`` or
``removed`` true) counts, with no author, title or text. Lemmy lists deleted and
removed comments (their content blanked) but no deleted or removed post to an
anonymous reader: a post removed before a poll read it is never counted, one
removed after stays as it was read. An item of another community is skipped, and a page
with items of none of this community means the instance does not know it (up to
0.18.0 Lemmy ignored an unknown ``community_name`` and listed every community):
the poll fails as ``http_4xx``, as later versions answer ``couldnt_find_community``.

Identity and privacy: the author handed to ingest (which pseudonymizes it) is
``creator.actor_id`` (``https://lemmy.world/u/alice``), so ``alice`` of
lemmy.world and ``alice`` of beehaw.org stay two people. A post's or comment's
link is its ``ap_id`` (``https://lemmy.ca/post/67172855``), but only when it
names no user: ``ap_id``s of other software can (``/users/alice/statuses/1``,
``/@alice/1``), and then the instance's own ``/post/{id}`` or ``/comment/{id}``
is kept instead. Nothing naming a user is stored.

Rate: Lemmy allows 180 reads a minute per IP by default (the ``message``
bucket of ``local_site_rate_limit``); the default here is 30 a minute per host,
a sixth of it. Lemmy 1.0 sends ``X-Ratelimit-*`` headers (honoured by
``PoliteClient``) and answers 429 when the budget is spent; 0.19 sends no headers
and answers 400 (``rate_limit_error``), which is counted as ``http_4xx``: the
body of an error is not read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import httpx

from monitor.config import CommunityBase, LemmyCommunity, Settings
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.http import PoliteClient
from monitor.sources.base import Cursor, FetchResult, Item, PollInput, Source

PAGE_SIZE = 50
"""Items a page (Lemmy's ``FETCH_LIMIT_MAX``; a larger ``limit`` is refused)."""
MAX_PAGES = 10
OVERLAP_SECONDS = 900
"""How far below the newest item read a walk looks again, for items federating in late."""
MAX_SEEN = 2000
MAX_ID = 2**31 - 1
"""Lemmy's ids are PostgreSQL ``integer``s: none is larger."""
MAX_CURSOR_LENGTH = 256
EARLIEST = 1_546_300_800
"""2019-01-01, weeks before Lemmy's first commit: no item is older."""
USER_SEGMENTS = frozenset(
    {"u", "user", "users", "people", "profile", "profiles", "account", "accounts"}
)
"""Path segments that put a user's name in a link (Lemmy ``/u/``, Mastodon ``/users/``...)."""

Kind = Literal["posts", "comments"]
ENDPOINTS: dict[Kind, str] = {"posts": "/api/v3/post/list", "comments": "/api/v3/comment/list"}
"""Cursor key (and the list's key in the answer) -> endpoint."""


# ---------------------------------------------------------------- pure parsing


def lemmy_id(value: object) -> int | None:
    """An id as Lemmy hands them out: an integer in ``1..MAX_ID`` (None for anything else)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    return None


def parse_time(value: object) -> int | None:
    """UTC epoch seconds of a Lemmy timestamp, floored: ``2026-07-02T05:33:45.680997Z``
    (0.19 and later) or the same without ``Z`` (0.18, UTC all the same)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _split(link: str) -> SplitResult | None:
    """``link`` split, or None when it cannot be (``http://[x``: no IPv6 address)."""
    try:
        return urlsplit(link)
    except ValueError:
        return None


def names_no_user(link: str, creator: Mapping[str, Any]) -> bool:
    """Whether ``link`` (an ``ap_id``) is an http(s) URL that names no user: no ``/u/``,
    ``/users/``, ``/@name`` or ``/~name`` segment, and nowhere the creator's name."""
    parts = _split(link)
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    segments = [unquote(s).casefold() for s in parts.path.split("/") if s]
    if any(s in USER_SEGMENTS or s.startswith(("@", "~")) for s in segments):
        return False
    actor = _text(creator.get("actor_id")).rstrip("/")
    names = {_text(creator.get("name")), unquote(actor.rpartition("/")[2])}
    whole = unquote(link).casefold()
    return not any(name.casefold() in whole for name in names if name)


def discussion_link(view: Mapping[str, Any], inner: Mapping[str, Any], fallback: str) -> str:
    """The item's ``ap_id`` when it names no user, else ``fallback`` (the instance's own page)."""
    ap_id = inner.get("ap_id")
    if isinstance(ap_id, str) and names_no_user(ap_id, _mapping(view.get("creator"))):
        return ap_id
    return fallback


def author_of(view: Mapping[str, Any]) -> str | None:
    """The creator's ``actor_id``: one identity per person across instances."""
    actor = _mapping(view.get("creator")).get("actor_id")
    return actor if isinstance(actor, str) and actor else None


def is_gone(inner: Mapping[str, Any]) -> bool:
    """Deleted by its author or removed by a moderator."""
    return inner.get("deleted") is True or inner.get("removed") is True


def parent_in_path(path: object, comment_id: int) -> int | None:
    """The comment a comment answers, from its ``path`` (``0.<ancestor ids>.<its id>``);
    None when it answers the post (or the path is not one of it)."""
    if not isinstance(path, str):
        return None
    parts = path.split(".")
    if len(parts) < 3 or parts[0] != "0" or parts[-1] != str(comment_id):
        return None
    parent = parts[-2]
    if not (parent.isascii() and parent.isdigit() and len(parent) <= 10):
        return None  # "²" is a digit to str.isdigit, and int() refuses 5000 digits
    return int(parent) if lemmy_id(int(parent)) is not None else None


def view_problem(view: Mapping[str, Any], kind: Kind) -> str | None:
    """Why ``view`` cannot become an item (a reason of ``REJECTION_REASONS``), or None."""
    inner = _mapping(view.get("post" if kind == "posts" else "comment"))
    keys = ("id",) if kind == "posts" else ("id", "post_id")
    for key in keys:
        value = inner.get(key)
        if value is None:
            return "missing_field"
        if lemmy_id(value) is None:
            return "bad_id"
    published = inner.get("published")
    if published is None:
        return "missing_field"
    return "bad_time" if parse_time(published) is None else None


def post_item(view: Mapping[str, Any], *, base_url: str) -> Item | None:
    """One PostView as an ``Item``; None without an id or a time."""
    post = _mapping(view.get("post"))
    number, created = lemmy_id(post.get("id")), parse_time(post.get("published"))
    if number is None or created is None:
        return None
    gone = is_gone(post)
    external = f"post/{number}"
    return Item(
        external_id=external,
        kind="thread",
        thread_id=external,
        created_at=created,
        author=None if gone else author_of(view),
        title="" if gone else _text(post.get("name")),
        text="" if gone else _text(post.get("body")),
        url=discussion_link(view, post, f"{base_url}/post/{number}"),
        edited_at=parse_time(post.get("updated")),
        deleted=gone,
    )


def comment_item(view: Mapping[str, Any], *, base_url: str) -> Item | None:
    """One CommentView as an ``Item``; None without an id, a post or a time."""
    comment = _mapping(view.get("comment"))
    number, created = lemmy_id(comment.get("id")), parse_time(comment.get("published"))
    post_id = lemmy_id(comment.get("post_id"))
    if number is None or created is None or post_id is None:
        return None
    gone = is_gone(comment)
    parent = parent_in_path(comment.get("path"), number)
    return Item(
        external_id=f"comment/{number}",
        kind="reply",
        thread_id=f"post/{post_id}",
        parent_id=f"post/{post_id}" if parent is None else f"comment/{parent}",
        created_at=created,
        author=None if gone else author_of(view),
        text="" if gone else _text(comment.get("content")),
        url=discussion_link(view, comment, f"{base_url}/comment/{number}"),
        edited_at=parse_time(comment.get("updated")),
        deleted=gone,
    )


def of_community(view: Mapping[str, Any], *, name: str, host: str | None) -> bool:
    """Whether the item is of community ``name`` of ``host`` (a community of the instance
    itself when None). One that does not say which community it is of is taken to be:
    the list was asked for one."""
    community = view.get("community")
    if not isinstance(community, Mapping):
        return True
    if _text(community.get("name")).casefold() != name.casefold():
        return False
    if host is None:
        return community.get("local") is True
    actor = _split(_text(community.get("actor_id")))
    return actor is not None and actor.netloc.casefold() == host.casefold()


def view_id(view: Mapping[str, Any], kind: Kind) -> int | None:
    return lemmy_id(_mapping(view.get("post" if kind == "posts" else "comment")).get("id"))


def is_featured(view: Mapping[str, Any]) -> bool:
    """A post pinned in its community: Lemmy lists it first, whatever its time."""
    return _mapping(view.get("post")).get("featured_community") is True


def offset_windows(page_size: int) -> Iterator[tuple[int, int]]:
    """(page, limit) of each offset page of a walk: the first page whole, then each next
    one starting 1 to 15 items above where the last one ended, at the offset (a multiple
    of the limit: Lemmy's offset is ``limit * (page - 1)``) whose page reaches furthest.
    Of 15 offsets in a row one is a multiple of 16, so with pages of 16 or more there is
    always one whose page reaches past the last one."""
    if page_size < 16:
        raise ValueError("offset pages overlap only with pages of 16 items or more")
    end = page_size
    yield 1, page_size
    while True:
        candidates = []
        for offset in range(end - 1, end - 16, -1):
            limit = next(n for n in range(page_size, 0, -1) if offset % n == 0)
            if offset + limit > end:
                candidates.append((offset + limit, offset, limit))
        _, offset, limit = max(candidates)
        end = offset + limit
        yield offset // limit + 1, limit


# ---------------------------------------------------------------- cursor


@dataclass(frozen=True, slots=True)
class _Mark:
    """How far one list has been read: the floor and the items at or above it."""

    floor: int
    """Items older than this second were read before (or lie before ``history_days``)."""
    seen: dict[str, int] = field(default_factory=dict)
    newest: int | None = None

    @classmethod
    def load(cls, raw: object, *, since: int, now: int) -> _Mark:
        """The mark of a stored cursor; a first poll's when there is none (or it lies past
        ``now``: then what came after it was never read)."""
        newest = raw.get("newest") if isinstance(raw, Mapping) else None
        if not isinstance(newest, int) or isinstance(newest, bool) or newest > now:
            return cls(floor=since)
        seen = raw.get("seen") if isinstance(raw, Mapping) else None
        pairs = seen.items() if isinstance(seen, Mapping) else ()
        kept = {
            str(key): value
            for key, value in pairs
            if isinstance(value, int) and not isinstance(value, bool)
        }
        return cls(floor=newest - OVERLAP_SECONDS, seen=kept, newest=newest)

    def is_new(self, item: Item) -> bool:
        return item.created_at >= self.floor and item.external_id not in self.seen

    def advanced(self, items: Sequence[Item], *, now: int) -> dict[str, Any] | None:
        """The cursor after ``items``: None while nothing was ever read."""
        times = [min(item.created_at, now) for item in items]
        if self.newest is None and not times:
            return None
        newest = max([*times, *([] if self.newest is None else [self.newest])])
        both = {**self.seen, **{item.external_id: item.created_at for item in items}}
        recent = sorted(
            ((key, at) for key, at in both.items() if at >= newest - OVERLAP_SECONDS),
            key=lambda pair: pair[1],
        )[-MAX_SEEN:]
        return {"newest": newest, "seen": dict(recent)}


@dataclass(slots=True)
class _Walk:
    """What one walk down one list found."""

    floor: int
    new: list[Item] = field(default_factory=list)
    complete: bool = False
    continuous: bool = True
    """False once a page boundary may have hidden an item."""
    oldest: int | None = None
    """The oldest (not pinned) item read above any doubtful boundary."""

    def take(self, item: Item, *, pinned: bool, mark: _Mark) -> bool:
        """Note a read item (kept when new); True when it lies below the floor."""
        if mark.is_new(item):
            self.new.append(item)  # an overlap read twice: base.poll keeps it once
        if pinned:  # listed first whatever its time: it tells nothing of the walk
            return False
        if self.continuous:
            self.oldest = (
                item.created_at if self.oldest is None else min(self.oldest, item.created_at)
            )
        return item.created_at < self.floor

    def complete_from(self, *, now: int) -> int:
        """From when every item of the list to now has been read (or was before): the floor
        when the walk got there; else, read newest first, the second after the oldest item
        read above the cut (items of that same second may lie below it)."""
        if self.complete:
            return self.floor
        return now if self.oldest is None else self.oldest + 1


@dataclass(slots=True)
class _Pager:
    """How a walk asks for its next page: by the instance's cursor, else by the next
    overlapping offset window (decided by the first page's ``next_page``)."""

    windows: Iterator[tuple[int, int]]
    page: int = 1
    limit: int = 0
    token: str | None = None
    by_offset: bool | None = None
    pages: int = 0
    listed: set[int] = field(default_factory=set)
    previous: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, page_size: int) -> _Pager:
        windows = offset_windows(page_size)
        page, limit = next(windows)
        return cls(windows, page, limit)

    def params(self) -> dict[str, Any]:
        if self.token is not None:
            return {"limit": self.limit, "page_cursor": self.token}
        return {"limit": self.limit} | ({"page": self.page} if self.page > 1 else {})

    def read(self, ids: set[int], *, count: int) -> Literal["new", "stalled", "doubtful"]:
        """What a page of ``count`` items with ``ids`` says of the paging: "stalled" when
        it is a whole page read before (the instance does not page), "doubtful" when an
        offset page shares no item with the one before."""
        first, previous = self.pages == 0, self.previous
        self.pages += 1
        stalled = not first and count >= self.limit and not ids - self.listed
        self.listed |= ids
        self.previous = ids
        if stalled:
            return "stalled"
        if not first and count and self.by_offset and not ids & previous:
            return "doubtful"
        return "new"

    def advance(self, next_page: str | None) -> bool:
        """Move on to the next page; False when there is no way to ask for one."""
        if self.by_offset is None:
            self.by_offset = next_page is None
        if self.by_offset:
            self.page, self.limit = next(self.windows)
            return True
        self.token = next_page
        return next_page is not None


class UnknownCommunity(HTTPStatusError):
    """The instance lists items of other communities only: it does not know this one."""

    def __init__(self, community: str, *, host: str, url: str) -> None:
        super().__init__(
            f"{host} lists no item of community {community!r} for it: it does not know it",
            host=host,
            url=url,
            status=404,
        )
        self.community = community


# ---------------------------------------------------------------- the adapter


class Lemmy(Source):
    """New posts and comments of one community, read from one Lemmy instance."""

    kind = "lemmy"
    earliest = EARLIEST
    rate_per_minute = 30.0
    page_size = PAGE_SIZE
    max_pages = MAX_PAGES
    """Pages one walk of one list reads at most."""

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        if not isinstance(community, LemmyCommunity):
            raise TypeError(f"Lemmy needs a LemmyCommunity, not {type(community).__name__}")
        super().__init__(community, settings=settings, client=client)
        self.community_name = community.community
        name, _, host = community.community.partition("@")
        self.name, self.host = name.casefold(), host.casefold() or None

    async def fetch(self, poll: PollInput) -> FetchResult:
        items: list[Item] = []
        cursor: Cursor = {}
        starts: list[int] = []
        complete = True
        for kind in ENDPOINTS:
            mark = _Mark.load(poll.cursor.get(kind), since=poll.since, now=poll.now)
            walk = await self._walk(kind, mark)
            items += walk.new
            complete = complete and walk.complete
            starts.append(walk.complete_from(now=self.intake.now))
            advanced = mark.advanced(walk.new, now=poll.now)
            if advanced is not None:
                cursor[kind] = advanced
        return FetchResult(
            items=items,
            cursor=cursor,
            complete=complete,
            covered_from=None if complete else max(starts),
        )

    async def _page(
        self, kind: Kind, params: Mapping[str, Any]
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        """The views of one page (non-objects rejected) and its ``next_page`` cursor."""
        url = self.url(ENDPOINTS[kind])
        body = await self.get_json(url, params=params)
        listed = body.get(kind) if isinstance(body, Mapping) else None
        if not isinstance(listed, list):
            host = httpx.URL(url).host
            raise MalformedResponse(f"{host} sent a {kind} list without {kind}", host=host, url=url)
        views: list[Mapping[str, Any]] = []
        for view in listed:
            if isinstance(view, Mapping):
                views.append(view)
            else:
                self.intake.reject("missing_field")
        if views and not any(of_community(view, name=self.name, host=self.host) for view in views):
            raise UnknownCommunity(self.community_name, host=httpx.URL(url).host, url=url)
        token = body.get("next_page")
        usable = (
            isinstance(token, str)
            and 0 < len(token) <= MAX_CURSOR_LENGTH
            and token.isascii()
            and token.isprintable()
        )
        return views, token if usable else None

    def _admit(self, view: Mapping[str, Any], kind: Kind) -> Item | None:
        problem = view_problem(view, kind)
        if problem is not None:
            inner = _mapping(view.get("post" if kind == "posts" else "comment"))
            self.intake.reject(problem, inner.get("id"))
            return None
        parse = post_item if kind == "posts" else comment_item
        item = parse(view, base_url=self.base_url)
        return None if item is None else self.intake.admit(item)

    async def _walk(self, kind: Kind, mark: _Mark) -> _Walk:
        """Page down one list to the mark's floor (see the module doc)."""
        walk, pager = _Walk(floor=mark.floor), _Pager.start(self.page_size)
        for number in range(self.max_pages):
            if number and self.out_of_time():
                break  # the poll's deadline: what is read so far is kept
            params = {"community_name": self.community_name, "sort": "New", **pager.params()}
            if kind == "posts":
                params["show_nsfw"] = "true"
            views, next_page = await self._page(kind, params)
            ids = {n for view in views if (n := view_id(view, kind)) is not None}
            paging = pager.read(ids, count=len(views))
            if paging == "stalled":
                break  # a whole page read before: the instance does not page this list
            walk.continuous = walk.continuous and paging == "new"
            reached = False
            for view in views:
                if not of_community(view, name=self.name, host=self.host):
                    continue
                item = self._admit(view, kind)
                if item is not None:
                    pinned = kind == "posts" and is_featured(view)
                    reached = walk.take(item, pinned=pinned, mark=mark) or reached
            if reached or len(views) < pager.limit:
                walk.complete = walk.continuous
                break
            if not pager.advance(next_page):
                break  # a cursor list that stopped handing out cursors: cannot go on
        return walk
