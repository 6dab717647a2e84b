"""Any RSS or Atom feed, read with feedparser, fetched with conditional requests.

**Where.** The feed is ``community.url``. When ``community.base_url`` is set it
replaces the scheme and host (and port) of that URL, and any path it carries is
put in front of the feed's path: ``url = "https://forum.example/posts.rss"`` with
``base_url = "http://127.0.0.1:8080/mirror"`` fetches
``http://127.0.0.1:8080/mirror/posts.rss``. Tests and mirrors point it anywhere.

**Redirects.** A feed may move within its site (``/feed`` to ``/feed.xml``, http to
https on the same host) and is followed there; a redirect to another host (a feed
service, a new domain) is refused with an error naming it, as for every source
(``monitor.http``), so the operator updates ``url`` rather than the monitor reading
from wherever a redirect says.

**How.** One GET per poll through the polite client, with the validators the
last poll committed (never on a first poll, so a reset cursor refetches); a 304
means nothing is new. The bytes go to ``feedparser.parse``, which never fetches
by itself here. A body that is no feed (an HTML page, JSON, nothing) is a
``MalformedResponse``; a feed with XML damage that still yields entries is
read, but neither its validators nor its time window are trusted (below). A
wrong content type or charset declaration is no damage. Relative links resolve
against ``community.url`` whatever ``base_url`` says, so ids stay the same.

**Identity and time.** ``external_id`` is the entry's id/guid, else its link,
else a hash of title and date; ids longer than 128 characters (the store's
column) are replaced by their SHA-256. ``created_at`` is ``published``, else
``updated``; an entry with neither is skipped. ``edited_at`` is ``updated`` when
it is later than ``published``. Feeds carry no deletions.

**Privacy.** A link that names a person (a path segment ``@name`` as on
Mastodon or Medium, a segment after ``/u/``, ``/users/`` and the like, or the
entry's author in the host or path) is not kept as the item's link, and an
id or link identity that names one is replaced by its SHA-256, so neither the
store nor the cursor ever holds the name.

**Threads.** A generic entry is a thread start. A Discourse entry (guid
``<site>-post-<n>``/``<site>-post-<topic>-<n>``/``<site>-topic-<topic>`` and a
link ``/t/<slug>/<topic>/<n>`` or ``/t/<slug>/<topic>[?page=p]#post_<n>``) is
placed in its topic: thread id ``<site>-topic-<topic>`` (Discourse's own guid
for the topic), post number 1 (or no number: the topic itself) is the thread
start, any other number a reply whose parent is the thread (the feed does not
say which post it answers) and whose title is left empty (it only repeats the
topic's title).

**Authors.** ``author``/``dc:creator``, the name without the e-mail address
when both are given; a leading ``@`` marks a Discourse user name, rendered as
``@name Full Name`` by some feeds, so only the user name is kept.

**Cursor.** Feeds have no paging; each poll sees the feed's current window. The
cursor holds ``floor`` (entries created before it are never reported), the
``newest`` time seen and ``seen`` (id -> created time) for ids at or after the
floor. After a complete parse the floor moves to ``newest - OVERLAP_SECONDS``, so
an entry that shows up late with an older time is still reported if it is
younger than that overlap; ``seen`` is capped at ``MAX_SEEN_IDS`` (the floor
rises past what the cap drops). After a damaged parse (perhaps a cut-off body)
the floor stays and the last entry (maybe cut short) is held back, so entries
the damage hid are reported by the next complete poll. A first poll reaches back
to ``poll.since`` or as far as the feed goes, whichever is shorter; entries that
fell off the feed between two polls are lost (logged at info).

**Coverage.** A feed vouches only for the span it lists: a first poll from its
oldest entry (or ``since``, when the feed reaches further), never from
``history_days`` back when the feed holds 38 days of it; a later poll from the
previous poll when the feed still reaches back to what that poll saw, else
(entries may have scrolled off in between, or damage cut the body short) from
its oldest entry. An empty first answer vouches for nothing.

**Bad bytes.** Control characters that XML 1.0 forbids (raw or as character
references) are removed before parsing, so one of them no longer turns every
poll into a "damaged" one whose window is never trusted. Entries dated before
1990 or in the future are rejected by the poll's ``Intake``, and neither moves
the floor.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import feedparser
import httpx
from feedparser.exceptions import ThingsNobodyCaresAboutButMe

from monitor.config import CommunityBase, FeedCommunity, Settings
from monitor.errors import MalformedResponse
from monitor.http import PoliteClient, Response
from monitor.sources.base import Cursor, FetchResult, Item, PollInput, Source, bounded_id
from monitor.untrusted import for_log

log = logging.getLogger(__name__)

OVERLAP_SECONDS = 2 * 86400
"""How far behind the newest entry a late-appearing entry is still reported."""
MAX_SEEN_IDS = 1000
"""Upper bound on the ids a cursor remembers."""

_DISCOURSE_GUID = re.compile(r"^(?P<site>\S+?)-(?:post|topic)-\d+(?:-\d+)?$")
_DISCOURSE_PATH = re.compile(r"^/t/[^/]+/(?P<topic>\d+)(?:/(?P<number>\d+))?/?$")
_POST_FRAGMENT = re.compile(r"^post_(?P<number>\d+)$")
_EMAIL_THEN_NAME = re.compile(r"^\S+@\S+\s*\((?P<name>[^()]*)\)$")
_NAME_THEN_EMAIL = re.compile(r"^(?P<name>[^()]*?)\s*\(\S+@\S+\)$")


def split_feed_url(*, url: str, base_url: str | None) -> tuple[str, str]:
    """(root, path-and-query) of the feed, with ``base_url`` as the root when set."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    root = base_url.rstrip("/") if base_url else f"{parts.scheme}://{parts.netloc}"
    return root, path


def _epoch(moment: Any) -> int | None:
    # feedparser normalizes every date it understands to a UTC struct_time
    if isinstance(moment, time.struct_time):
        return calendar.timegm(moment)
    return None


_PROFILE_SEGMENTS = frozenset({"u", "user", "users", "profile", "people", "author", "members"})
"""Path segments after which a link names a person (``/u/name``, ``/users/name``)."""


def names_someone(link: str, author: str | None) -> bool:
    """Whether ``link`` carries a person's name: a path segment ``@name`` (Mastodon,
    Medium), a segment after ``/u/``, ``/users/`` and the like, or the entry's own
    author anywhere in its host or path."""
    parts = urlsplit(link)
    segments = [unquote(segment).lower() for segment in parts.path.split("/") if segment]
    if any(segment.startswith("@") for segment in segments):
        return True
    if any(a in _PROFILE_SEGMENTS for a in segments[:-1]):
        return True
    name = (author or "").strip().lstrip("@").lower()
    if len(name) < 2:
        return False
    labels = (parts.hostname or "").split(".")
    return name in segments or name in labels or f"~{name}" in segments


def _private(value: str, author: str | None) -> str:
    """An id or link that names someone, as its SHA-256 (the store never holds the name)."""
    if "://" in value and names_someone(value, author):
        return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
    return value


def _identity(entry: Mapping[str, Any]) -> str | None:
    author = _author(entry)
    for key in ("id", "link"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return bounded_id(_private(value.strip(), author))
    date = entry.get("published") or entry.get("updated")
    if not date:
        return None
    text = f"{entry.get('title', '')}\n{date}"
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return f"sha256:{digest}"


def _author(entry: Mapping[str, Any]) -> str | None:
    detail = entry.get("author_detail") or {}
    name = str(entry.get("author") or detail.get("name") or "").strip()
    # RSS <author> is "email (Name)"; feedparser writes Atom's as "Name (email)". Its own
    # split cuts domains with long TLDs ("x.example" -> "x.exam"), so split here.
    if match := _EMAIL_THEN_NAME.match(name) or _NAME_THEN_EMAIL.match(name):
        name = match.group("name").strip() or name
    if name.startswith("@"):
        # Discourse: "@username" or "@username Full Name"; user names hold no spaces
        words = name[1:].split(maxsplit=1)
        name = words[0] if words else ""
    return name or None


def _text(entry: Mapping[str, Any]) -> str:
    # Atom's content (or RSS content:encoded) is the whole body; summary may be a teaser
    for content in entry.get("content") or ():
        if value := content.get("value"):
            return str(value)
    return str(entry.get("summary") or "")


@dataclass(frozen=True, slots=True)
class DiscoursePosition:
    thread_id: str
    post_number: int


def discourse_position(*, external_id: str, link: str | None) -> DiscoursePosition | None:
    """Where a Discourse feed entry sits in its topic, or ``None`` for any other feed."""
    guid = _DISCOURSE_GUID.match(external_id)
    if guid is None or not link:
        return None
    parts = urlsplit(link)
    path = _DISCOURSE_PATH.match(parts.path)
    if path is None:
        return None
    number = path.group("number")
    if number is None and (fragment := _POST_FRAGMENT.match(parts.fragment)):
        number = fragment.group("number")
    thread_id = bounded_id(f"{guid.group('site')}-topic-{path.group('topic')}")
    return DiscoursePosition(thread_id, int(number) if number else 1)


def entry_to_item(entry: Mapping[str, Any]) -> Item | None:
    """The normalized item of one feedparser entry; ``None`` without an id or a time."""
    # feedparser's dict answers some absent keys from others (updated from published,
    # with a DeprecationWarning); read only what the entry really holds
    entry = dict(entry.items())
    published = _epoch(entry.get("published_parsed"))
    updated = _epoch(entry.get("updated_parsed"))
    created = published if published is not None else updated
    external_id = _identity(entry)
    if created is None or external_id is None:
        return None
    link = entry.get("link") or None
    title = str(entry.get("title") or "")
    edited = updated if published is not None and updated is not None else None
    author = _author(entry)
    common: dict[str, Any] = {
        "external_id": external_id,
        "created_at": created,
        "author": author,
        "text": _text(entry),
        "text_is_html": True,
        # a link that names its author (``/@user/123``) is not kept, as Mastodon's is not
        "url": None if link and names_someone(link, author) else link,
        "edited_at": edited if edited is not None and edited > created else None,
    }
    position = discourse_position(external_id=external_id, link=link)
    if position is None:
        return Item(kind="thread", thread_id=external_id, title=title, **common)
    if position.post_number == 1:
        return Item(kind="thread", thread_id=position.thread_id, title=title, **common)
    return Item(kind="reply", thread_id=position.thread_id, parent_id=position.thread_id, **common)


_XML_CONTROLS = bytes(b for b in range(32) if b not in (9, 10, 13))
_CONTROL_REFERENCE = re.compile(
    rb"&#(?:0*(?:[0-8]|1[124-9]|2[0-9]|3[01])|[xX]0*(?:[0-8bBcCeEfF]|1[0-9a-fA-F]));"
)
"""Character references to those controls (``&#1;``, ``&#x1b;``), just as illegal."""
_WIDE_STARTS = (b"\xff\xfe", b"\xfe\xff", b"\x00<", b"<\x00", b"\x00\x00")


def without_controls(body: bytes) -> bytes:
    """``body`` without the control characters XML 1.0 forbids; a UTF-16 or UTF-32 body,
    whose every other byte may be 0, is left as it is."""
    if body.startswith(_WIDE_STARTS):
        return body
    return _CONTROL_REFERENCE.sub(b"", body.translate(None, _XML_CONTROLS))


def is_damaged(parsed: Any) -> bool:
    """Whether feedparser met broken XML (not merely a wrong content type or charset)."""
    return bool(parsed.bozo) and not isinstance(
        parsed.get("bozo_exception"), ThingsNobodyCaresAboutButMe
    )


def parse_feed(response: Response, *, canonical_url: str) -> Any:
    """feedparser's result for the body; ``MalformedResponse`` when it is no feed at all.

    Relative links (and permalink guids) resolve against ``canonical_url``, the
    configured feed URL, so a mirror yields the same items as the original.
    """
    headers = {"content-location": canonical_url}
    if content_type := response.headers.get("content-type"):
        headers["content-type"] = content_type
    # A stream, never bytes or str: feedparser would open a body that looks like a
    # file name or fetch one that looks like a URL.
    body = without_controls(response.content)
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    if not parsed.entries and (is_damaged(parsed) or not parsed.get("version")):
        host = httpx.URL(response.url).host
        kind = (content_type or "unknown type").split(";")[0]
        problem = type(parsed.get("bozo_exception")).__name__ if parsed.bozo else "no feed"
        raise MalformedResponse(
            f"expected an RSS or Atom feed from {host}, got {for_log(kind)} ({problem})",
            host=host,
            url=response.url,
        )
    return parsed


@dataclass(slots=True)
class FeedCursor:
    """What the last polls saw; see the module docstring."""

    floor: int
    newest: int | None = None
    seen: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: Cursor, *, since: int) -> FeedCursor:
        if "floor" not in cursor:  # a first poll (or a cursor from another design)
            return cls(floor=since)
        seen = {str(key): int(value) for key, value in dict(cursor.get("seen", {})).items()}
        newest = cursor.get("newest")
        return cls(int(cursor["floor"]), None if newest is None else int(newest), seen)

    def dump(self) -> Cursor:
        return {"floor": self.floor, "newest": self.newest, "seen": dict(self.seen)}

    def unseen(self, items: Iterable[Item]) -> list[Item]:
        return [i for i in items if i.created_at >= self.floor and i.external_id not in self.seen]

    def advanced(self, items: list[Item], *, now: int, complete: bool) -> FeedCursor:
        """The cursor after a poll that read ``items``; the floor moves only if ``complete``."""
        # a future-dated entry must not push the floor past entries yet to come
        times = [min(item.created_at, now) for item in items]
        newest = max([*times, *([self.newest] if self.newest is not None else [])], default=None)
        floor = self.floor
        if complete and newest is not None:
            floor = max(floor, newest - OVERLAP_SECONDS)
        seen = {**self.seen, **{item.external_id: item.created_at for item in items}}
        kept = sorted(((key, at) for key, at in seen.items() if at >= floor), key=lambda p: -p[1])
        if len(kept) > MAX_SEEN_IDS:
            floor = kept[MAX_SEEN_IDS][1] + 1  # forget the oldest, and everything as old
            kept = [(key, at) for key, at in kept if at >= floor]
        return FeedCursor(floor, newest, dict(kept))


def _string_validators(validators: Mapping[str, Any]) -> dict[str, str]:
    return {key: value for key, value in validators.items() if isinstance(value, str) and value}


class Feed(Source):
    """An RSS 2.0 or Atom feed (config kind ``rss``)."""

    kind = "rss"
    rate_per_minute = 30.0

    @classmethod
    def author_namespace(cls, community: CommunityBase) -> str | None:
        """None: a feed's author is a display name, not an account; equal names in two
        feeds are not known to be one person, so feeds take part in no flow."""
        return None

    @classmethod
    def host_for(cls, community: CommunityBase, settings: Settings) -> str:
        url = community.url if isinstance(community, FeedCommunity) else community.base_url
        return httpx.URL(url or "").host

    def __init__(
        self, community: FeedCommunity, *, settings: Settings, client: PoliteClient
    ) -> None:
        super().__init__(community, settings=settings, client=client)
        self.canonical_url = community.url
        self.base_url, self.feed_path = split_feed_url(
            url=community.url, base_url=community.base_url
        )

    async def fetch(self, poll: PollInput) -> FetchResult:
        resuming = "floor" in poll.cursor  # else a first poll, which must not get a 304
        conditional = _string_validators(poll.validators) if resuming else {}
        response = await self.get(self.url(self.feed_path), validators=conditional or None)
        if response.not_modified:
            kept = {**conditional, **response.validators}
            return FetchResult([], dict(poll.cursor), kept, not_modified=True)
        parsed = await asyncio.to_thread(parse_feed, response, canonical_url=self.canonical_url)
        whole = not is_damaged(parsed)
        # The last entry of a damaged body may be cut short (and then fall back to a
        # link or hash identity); the unmoved floor lets a complete poll report it.
        items = self._items(parsed.entries if whole else parsed.entries[:-1])
        before = FeedCursor.load(poll.cursor, since=poll.since)
        after = before.advanced(items, now=poll.now, complete=whole)
        # a damaged body's validators would turn the refetch it needs into a 304
        validators = response.validators if whole else {}
        complete, covered_from = self._coverage(items, before, first=not resuming, poll=poll)
        return FetchResult(
            before.unseen(items),
            after.dump(),
            validators,
            complete=complete,
            covered_from=covered_from,
        )

    def _coverage(
        self, items: list[Item], before: FeedCursor, *, first: bool, poll: PollInput
    ) -> tuple[bool, int | None]:
        """(complete, covered_from) of a poll that read ``items``: see the module doc."""
        oldest = min((item.created_at for item in items), default=None)
        if first:  # vouch from the feed's oldest entry, at most ``history_days`` back
            return True, poll.now if oldest is None else max(oldest, poll.since)
        if before.newest is None and oldest is None:
            return True, None  # nothing was ever listed, and nothing is now
        if oldest is not None and before.newest is not None and oldest <= before.newest:
            return True, None  # the feed still reaches back to what the last poll saw
        if oldest is not None:
            log.info(
                "feed of %s: every entry is new; some may have been missed between "
                "polls (poll more often)",
                self.community.id,
            )
        # entries before the floor are never reported, so no claim reaches below it
        return False, poll.now if oldest is None else max(oldest, before.floor)

    def _items(self, entries: Iterable[Mapping[str, Any]]) -> list[Item]:
        items: list[Item] = []
        for entry in entries:
            item = entry_to_item(entry)
            if item is None:
                self.intake.reject("missing_field", entry.get("id") or entry.get("link"))
            elif (admitted := self.intake.admit(item)) is not None:
                items.append(admitted)
        return items
