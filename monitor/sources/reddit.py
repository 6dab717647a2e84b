"""Reddit: a subreddit's new submissions and new comments.

Endpoints: ``/r/{sub}/new.json`` (submissions, kind ``thread``) and
``/r/{sub}/comments.json`` (comments, kind ``reply``), both newest first, with
``limit=100`` (Reddit's maximum) and ``raw_json=1`` (no HTML-entity escaping).

Paging goes back in time with ``after=<fullname of the last item>`` until an
item at or older than the cursor shows up. A poll that has a cursor starts with
a page of ``FIRST_PAGE_SIZE`` (10) items and widens to 100 only while every
item it lists is new, so an idle poll downloads a tenth of what two full
pages weigh. ``before=`` is never used: Reddit
answers an empty listing when the ``before`` item was deleted or removed, which
would stall a poller forever without an error.

Cursor, per endpoint: ``{"created": <newest created_utc seen, int>, "ids":
[fullnames created in that second]}``; an item is new when it is newer than
``created``, or in the same second and not in ``ids``. A failed poll raises,
so the caller keeps the old cursor and the next poll pages back to it again.

First poll (empty cursor): back to ``poll.since`` (``history_days``), bounded
by ``MAX_PAGES`` pages of 100 per endpoint. Reddit itself lists at most about
1000 items per listing, so on a busy subreddit the first poll reaches less far
than ``history_days``, and nothing older can be fetched at all (``backfill``
reaches as far). The same horizon bounds a later poll: more than 1000 new
items in one interval cannot all be listed, so such a poll returns what Reddit
lists and moves the cursor on.

Coverage: a walk that runs out of pages before its mark says
``complete=False``. So does a listing that ends (``after`` null) after
``HORIZON_ITEMS`` or more items without reaching the mark: that is Reddit's
listing horizon on a busy subreddit, not the subreddit's beginning. A listing
that ends sooner is a young subreddit's whole history and counts as complete.
An incomplete poll vouches (``covered_from``) only from where every endpoint's
view is complete: the latest of each endpoint's oldest listed item (or its mark,
where it got there), so a busy comment stream cut at 1000 items never lets a
quiet submission listing claim days whose comments were not listed.

Times: ``created_utc`` is a JSON float; NaN, infinities and absurd values make
the child unusable (rejected as ``missing_field``), and an item dated before
Reddit existed or in the future is rejected by the poll's ``Intake`` before it
can move a mark. A mark never lies past the poll's clock.

Identity: fullnames (``t3_abc``, ``t1_def``). Submissions and comments have
separate id sequences, so bare ids could collide. A reply's ``thread_id`` is its
``link_id``, which equals the submission's ``external_id``; its ``parent_id``
is the fullname of the comment or submission it answers.

Deleted (``[deleted]``) and removed (``[removed]``) posts still count as posts:
author ``None``, ``deleted=True``, empty text (the placeholder is not theirs).

Auth: anonymous against www.reddit.com at 10 requests/min, or app-only OAuth
when ``[reddit] client_id`` and ``client_secret`` are set: a client-credentials
token from ``/api/v1/access_token`` (cached per app and endpoint until a minute
before it expires), then oauth.reddit.com with ``Authorization: bearer`` at 100
requests/min. With ``base_url`` set, both the token endpoint and the API use
it. ``X-Ratelimit-Remaining``/``-Reset`` (floats on Reddit) are honoured by
``PoliteClient``.

User-Agent: Reddit asks for ``<platform>:<app id>:<version> (by /u/<user>)``;
``[reddit] user_agent`` sets it. Only the operator can name their Reddit account,
so without it ``default_user_agent`` puts the configured ``contact`` (URL or
e-mail) where the account would be: that is how Reddit reaches whoever runs this.
``forum-monitor check-config`` warns while neither is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from monitor import __version__
from monitor.config import CommunityBase, RedditCommunity, Settings
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.http import PoliteClient
from monitor.sources.base import Cursor, FetchResult, Item, PollInput, Source, epoch_seconds
from monitor.untrusted import for_log

log = logging.getLogger(__name__)

WWW_BASE = "https://www.reddit.com"
OAUTH_BASE = "https://oauth.reddit.com"
TOKEN_PATH = "/api/v1/access_token"
PAGE_SIZE = 100
FIRST_PAGE_SIZE = 10
"""The first page of a poll that has a mark: an idle poll of a busy subreddit reads 10
items a listing (about 25 KB on real pages) rather than 100 (about 250 KB)."""
MAX_PAGES = 10
"""10 x 100 items: as far back as Reddit lists anything."""
HORIZON_ITEMS = 500
"""A listing that ends after this many items may have hit Reddit's ~1000-item horizon
rather than the subreddit's first post (removed items make the horizon land short of
1000), so it does not count as complete; a young subreddit with fewer only loses the
empty days before its first post from its coverage."""
EARLIEST = 1_119_484_800
"""2005-06-23, when Reddit opened: no item is older."""
OAUTH_RATE_PER_MINUTE = 100.0
TOKEN_MARGIN_SECONDS = 60.0
"""Fetch a new token this long (at most half its lifetime) before the old one expires."""
PLACEHOLDERS = frozenset({"[deleted]", "[removed]"})

ENDPOINTS = {"submissions": "new", "comments": "comments"}
"""Cursor key -> listing name under ``/r/{sub}/``."""


def default_user_agent(contact: str) -> str:
    """Reddit's form with the operator's ``contact`` in place of ``(by /u/<user>)``."""
    return f"python:forum-monitor:{__version__} (+{contact})"


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Mark:
    """How far one endpoint has been read: newest second seen and the items in it."""

    created: int
    ids: frozenset[str]

    @classmethod
    def load(cls, raw: object, *, now: int) -> _Mark | None:
        """The mark from a stored cursor; anything unreadable means a first poll, and so
        does a mark past ``now`` (left by a release that let a future-dated item move it:
        what came after that item was never listed, so the walk starts over)."""
        if not isinstance(raw, Mapping):
            return None
        created, ids = raw.get("created"), raw.get("ids", [])
        if not isinstance(created, int) or isinstance(created, bool) or not isinstance(ids, list):
            return None
        if created > now:
            return None
        return cls(created, frozenset(str(i) for i in ids))

    def dump(self) -> dict[str, Any]:
        return {"created": self.created, "ids": sorted(self.ids)}

    def covers(self, item: Item) -> bool:
        """True when ``item`` is at or older than this mark (already seen)."""
        return item.created_at < self.created or (
            item.created_at == self.created and item.external_id in self.ids
        )

    def advanced(self, items: Iterable[Item], *, now: int) -> _Mark:
        """The mark after ``items``; an item a little in the future (within the intake's
        skew) leaves the mark at ``now``, so it is simply listed again next poll."""
        mark = self
        for item in items:
            created = min(item.created_at, now)
            if created > mark.created:
                mark = _Mark(created, frozenset())
            if created == item.created_at == mark.created:
                mark = _Mark(mark.created, mark.ids | {item.external_id})
        return mark


@dataclass(slots=True)
class Listing:
    """One parsed listing page."""

    items: list[Item]
    after: str | None
    skipped: list[str | None]
    """Children without a kind we read, an id, a timestamp or (comments) a thread: their
    fullnames where they have one."""


_epoch = epoch_seconds


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def item_from_thing(kind: str, data: Mapping[str, Any], *, web_root: str) -> Item | None:
    """A submission (``t3``) or comment (``t1``) as an ``Item``; ``None`` if unusable."""
    if kind not in ("t1", "t3"):
        return None
    name = data.get("name")
    if not isinstance(name, str) or not name:
        bare = data.get("id")
        name = f"{kind}_{bare}" if isinstance(bare, str) and bare else None
    created = _epoch(data.get("created_utc"))
    if name is None or created is None:
        return None
    text = _text(data, "selftext" if kind == "t3" else "body")
    author = data.get("author") if isinstance(data.get("author"), str) else None
    deleted = (
        author in PLACEHOLDERS
        or text in PLACEHOLDERS
        or data.get("removed_by_category") is not None
    )
    edited = data.get("edited")
    permalink = data.get("permalink")
    common: dict[str, Any] = {
        "external_id": name,
        "created_at": created,
        "author": None if deleted else author,
        "text": "" if deleted else text,
        "url": web_root + permalink if isinstance(permalink, str) else None,
        "edited_at": _epoch(edited),  # false, or (on very old posts) true without a time
        "deleted": deleted,
    }
    if kind == "t3":
        return Item(kind="thread", thread_id=name, title=_text(data, "title"), **common)
    thread = data.get("link_id")
    if not isinstance(thread, str) or not thread:
        return None
    parent = data.get("parent_id")
    return Item(
        kind="reply",
        thread_id=thread,
        parent_id=parent if isinstance(parent, str) and parent else thread,
        **common,
    )


def _children(payload: object, *, url: str) -> tuple[list[Any], str | None]:
    data = payload.get("data") if isinstance(payload, Mapping) else None
    children = data.get("children") if isinstance(data, Mapping) else None
    if not isinstance(data, Mapping) or not isinstance(children, list):
        raise MalformedResponse(
            "expected a Reddit listing (data.children)", host=httpx.URL(url).host, url=url
        )
    after = data.get("after")
    return children, after if isinstance(after, str) and after else None


def _things(children: list[Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for child in children:
        if isinstance(child, Mapping) and isinstance(child.get("data"), Mapping):
            yield str(child.get("kind", "")), child["data"]
        else:
            yield "", {}


def parse_listing(payload: object, *, url: str, web_root: str) -> Listing:
    """Items of one ``new``/``comments`` listing page; other kinds are skipped."""
    children, after = _children(payload, url=url)
    items: list[Item] = []
    skipped: list[str | None] = []
    for kind, data in _things(children):
        item = item_from_thing(kind, data, web_root=web_root)
        if item is None:
            name = data.get("name")
            skipped.append(name if isinstance(name, str) else None)
        else:
            items.append(item)
    return Listing(items, after, skipped)


def items_from_comment_tree(payload: object, *, url: str = "", web_root: str) -> list[Item]:
    """Flatten a ``/comments/{id}.json`` answer (submission + nested comments) into items.

    ``more`` stubs (comments not expanded in this answer) and unusable children are skipped.
    """
    if not isinstance(payload, list) or len(payload) != 2:
        raise MalformedResponse(
            "expected a [submission, comments] pair of listings",
            host=httpx.URL(url).host if url else "",
            url=url,
        )
    items: list[Item] = []
    pending = [payload[0], payload[1]]
    while pending:
        children, _ = _children(pending.pop(), url=url)
        for kind, data in _things(children):
            if (item := item_from_thing(kind, data, web_root=web_root)) is not None:
                items.append(item)
            if isinstance(data.get("replies"), Mapping):
                pending.append(data["replies"])
    return sorted(items, key=lambda item: (item.created_at, item.external_id))


@dataclass(slots=True)
class _Walk:
    """What one listing's walk back found."""

    complete_from: int
    """Every item of the listing created from here to now was listed (by this walk, or
    before the mark by earlier polls)."""
    new: list[Item] = field(default_factory=list)
    reached: bool = True
    """Whether the walk got to the mark, to ``since`` or to the listing's real end."""


class Reddit(Source):
    """New submissions and comments of one subreddit."""

    kind = "reddit"
    default_base_url = WWW_BASE
    earliest = EARLIEST
    rate_per_minute = 10.0
    _tokens: ClassVar[dict[tuple[str, str], _Token]] = {}
    """Tokens shared by every instance: (token URL, client id) -> token."""

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        super().__init__(community, settings=settings, client=client)
        if not isinstance(community, RedditCommunity):
            raise TypeError(f"Reddit needs a RedditCommunity, got {type(community).__name__}")
        self.subreddit = community.subreddit
        self.oauth = bool(settings.reddit.client_id and settings.reddit.client_secret)
        self.base_url = community.url_root(OAUTH_BASE if self.oauth else WWW_BASE)
        self.web_root = community.url_root(WWW_BASE)
        self.token_url = community.url_root(WWW_BASE) + TOKEN_PATH
        self.user_agent = settings.reddit.user_agent or default_user_agent(settings.contact)
        self._token: _Token | None = None

    def rate_for(self, host: str) -> float:
        default = OAUTH_RATE_PER_MINUTE if self.oauth else self.rate_per_minute
        return self.settings.http.rate_per_minute.get(host, default)

    def headers(self) -> dict[str, str]:
        return {"User-Agent": self.user_agent}

    def credentials(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"bearer {self._token.value}"}

    async def fetch(self, poll: PollInput) -> FetchResult:
        items: list[Item] = []
        cursor: Cursor = {}
        horizons: list[int] = []
        complete = True
        await self._ensure_token()  # once per poll: the renewal margin outlasts a poll
        for key, listing in ENDPOINTS.items():
            mark = _Mark.load(poll.cursor.get(key), now=poll.now)
            walk = await self._read_back(listing, mark, since=poll.since)
            items += walk.new
            complete = complete and walk.reached
            horizons.append(walk.complete_from)
            if mark is not None or walk.new:
                start = mark or _Mark(0, frozenset())
                cursor[key] = start.advanced(walk.new, now=poll.now).dump()
        return FetchResult(
            items=items,
            cursor=cursor,
            complete=complete,
            covered_from=None if complete else max(horizons),
        )

    async def _read_back(self, listing: str, mark: _Mark | None, *, since: int) -> _Walk:
        """New items of one listing, paging back until the mark (or ``since``) is reached,
        the listing ends or ``MAX_PAGES`` pages are read (see the module doc)."""
        url = self.url(f"/r/{self.subreddit}/{listing}.json")
        walk = _Walk(complete_from=mark.created if mark else since)
        after: str | None = None
        listed = 0
        # after a mark, most polls find little new: a small first page says so cheaply, and
        # the walk widens to full pages only while every item it lists is new
        limit = FIRST_PAGE_SIZE if mark is not None else PAGE_SIZE
        pages = MAX_PAGES + (limit < PAGE_SIZE)  # the small page does not shorten the reach
        for page_number in range(pages):
            if page_number and self.out_of_time():
                break  # the poll's deadline: what is listed so far is kept
            params: dict[str, Any] = {"limit": limit, "raw_json": 1}
            limit = PAGE_SIZE
            if after is not None:
                params["after"] = after
            page = parse_listing(await self._get_json(url, params), url=url, web_root=self.web_root)
            for name in page.skipped:
                self.intake.reject("missing_field", name)
            listed += len(page.items) + len(page.skipped)
            reached = False
            for item in filter(None, map(self.intake.admit, page.items)):
                seen = mark.covers(item) if mark else item.created_at < since
                reached = reached or seen
                if not seen:
                    walk.new.append(item)  # anywhere on the page: the order is not exact
            after = page.after
            if reached or (after is None and listed < HORIZON_ITEMS):
                return walk
            if after is None:
                break  # the listing's horizon, not the subreddit's first post
        walk.reached = False
        walk.complete_from = min((item.created_at for item in walk.new), default=self.intake.now)
        return walk

    async def _get_json(self, url: str, params: Mapping[str, Any]) -> Any:
        try:
            response = await self.get(url, params=params)
        except HTTPStatusError as exc:
            if not (self.oauth and exc.status == 401):
                raise
            self._drop_token()  # revoked or expired early: one fresh token, one retry
            await self._ensure_token()
            response = await self.get(url, params=params)
        final = httpx.URL(response.url)
        if not final.path.lower().startswith(f"/r/{self.subreddit.lower()}/"):
            # Reddit redirects an unknown subreddit to a search page that is a valid listing
            raise HTTPStatusError(
                f"r/{self.subreddit} does not exist (redirected to {for_log(final.path)})",
                host=final.host,
                url=url,
                status=404,
            )
        return response.json()

    def _drop_token(self) -> None:
        self._token = None
        self._tokens.pop((self.token_url, self.settings.reddit.client_id or ""), None)

    async def _ensure_token(self) -> None:
        if not self.oauth:
            return
        key = (self.token_url, self.settings.reddit.client_id or "")
        cached = self._tokens.get(key)
        if cached is None or cached.expires_at <= time.time():
            cached = await self._request_token()
            self._tokens[key] = cached
        self._token = cached

    async def _request_token(self) -> _Token:
        """An app-only token by the client-credentials grant."""
        client_id = self.settings.reddit.client_id or ""
        secret = self.settings.reddit.client_secret or ""
        host = httpx.URL(self.token_url).host
        self.client.set_rate(host, self.rate_for(host))
        response = await self.client.request(
            "POST",
            self.token_url,
            headers={"User-Agent": self.user_agent},
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            counter=self.counter,
        )
        body = response.json()
        token = body.get("access_token") if isinstance(body, Mapping) else None
        lifetime = _epoch(body.get("expires_in")) if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token or lifetime is None:
            problem = body.get("error") if isinstance(body, Mapping) else None
            raise MalformedResponse(
                f"no access token from {host}" + (f" ({for_log(problem)})" if problem else ""),
                host=host,
                url=self.token_url,
            )
        margin = min(TOKEN_MARGIN_SECONDS, lifetime / 2)
        return _Token(token, time.time() + lifetime - margin)
