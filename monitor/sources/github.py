"""GitHub Discussions: one repository's discussions, their comments and the replies to those.

Endpoint: GitHub's GraphQL API, ``POST {base_url}/graphql`` (default
https://api.github.com) with a JSON body, authenticated with ``Authorization: bearer
<[github] token>`` (GitHub answers nothing without a token; ``check-config`` refuses a
config that polls GitHub without one). A discussion is a thread, its comments and the
replies to them (one level deep, as GitHub nests them) are replies.

**Why one walk by activity.** New comments land on old discussions, so walking by
creation would never see them. ``discussions(orderBy: {field: UPDATED_AT, direction:
DESC})`` (GitHub's default order) lists first the discussions with the latest activity:
the recorded pages (``shared/real-samples/github-discussions``) are in the order of each
discussion's newest post, a reply to an old comment included, and their cursors encode
that time; a recorded discussion's ``updatedAt`` equals or follows the creation of its
newest comment or reply. A new discussion is also a discussion with new activity, so one
walk finds threads and replies alike. A discussion's *activity* here is the latest of its
``updatedAt``, its creation and the creation of the comments and replies the page shows
(times the poll's ``Intake`` finds implausible are left out): no post in it is newer.

**A poll** pages newest-active first, ``discussions_page`` (10) a page, each discussion
with its last ``comments_window`` (10) comments and their last ``replies_window`` (10)
replies, until a discussion's activity lies below the *stop* (120 s,
``OVERLAP_SECONDS``, before the newest activity the last complete walk saw; on a first
poll ``history_days`` back) or the list ends. A discussion with new activity is read
whole: a reply can land under any comment, so when the page does not hold all its
comments the rest are fetched ``follow_page`` (100) at a time (``node(id) { comments(last,
before) }``), and a comment whose shown replies all lie after the floor has its earlier
replies fetched the same way until one is older. Reported are the posts created at or
after the walk's *floor* (the stop, or ``history_days`` back) and not reported before.

Cursor: ``mark`` (the newest activity of the last complete walk), ``known`` (discussions
read whole: id -> [activity then, ids of its posts of the last 120 s before it]; a
discussion listed again with no newer activity costs nothing, one with newer activity is
read again and only its posts created after that window, or in it but not listed, are
new), the resolved ``category``, and while a walk spread over polls is under way
``floor``, ``top`` (its newest activity), ``pending`` (``after``: GitHub's cursor of the
page holding the first discussion it did not finish, none for the newest page; ``stop``;
``floor``) and ``hole`` (below).

**Cost.** GitHub meters points: the requests each connection of a query could need (a
nested connection once per parent), divided by 100 and rounded, at least 1 a query. A
page is 1 + 10 + 10 x 10 = 111 -> 1 point; a follow-up page of 100 comments with 10
replies each 1 + 100 = 101 -> 1 point; 100 more replies of one comment 1 point;
resolving the category (once, then kept in the cursor) 1 point. So an idle poll is 1
request and 1 point; K discussions with new activity, each of at most 10 comments, cost
ceil((K + w + 1) / 10) requests, w being the discussions active in the 120 s below the
last walk's newest (so at most ceil(K / 10) + 1 while w <= 8); a discussion of C
comments with new activity costs ceil((C - 10) / 100) more (C = 1,000: 9 requests), and
a comment with more than 10 replies after the floor ceil(its new replies / 100) more. A
poll sends at most ``max_requests`` (20); at the default 60 requests a minute a host
cannot spend more than 3,600 of GitHub's 5,000 points an hour. ``rateLimit { cost
remaining resetAt }`` rides along with every query:
``forum_monitor_rate_limit_remaining{host}`` shows ``remaining``, and at 0 the host is
paused until ``resetAt`` (at most an hour, as every server wait).

**Coverage.** A walk that reaches its stop vouches as every complete poll does (from the
last success). One cut short, by ``max_requests`` or the poll's deadline, keeps what it
finished, never half a discussion: its posts are reported only once the discussion is
read whole, and the next poll goes on from the page holding the first discussion it did
not finish (``pending``; the finished ones on that page are met again unchanged, at no
cost; the cursor encodes a place in the order, so discussions bumped meanwhile, which
move above it, are met by the walk from the newest, and reported from the walk's floor).
A cut poll vouches only from just above the activity of the first discussion it did not
finish (every newer post is in a discussion it finished); one that works on ``pending``
vouches for nothing new (the newest discussions are not read); the poll that finishes
the range and then reaches the stop from the newest vouches from the walk's floor. A
discussion too large to read whole within a poll's ``max_requests`` (more than about
1,900 comments) is reported as far as read and the walk goes on; its unread part lies at
or below its activity, so coverage is not claimed there (``hole``).

**Errors.** An answer with an ``errors`` array is a failure even with HTTP 200:
``NOT_FOUND`` for the repository is a 404 naming it (and discussions turned off one too),
``RATE_LIMITED`` (or ``RATE_LIMIT``) a ``RateLimited`` until ``Retry-After``,
``X-RateLimit-Reset`` or a minute, ``FORBIDDEN`` a 403, any other type a
``GraphQLFailure`` (reason ``malformed``) naming it. A discussion or comment deleted
between the list and its follow-up (``NOT_FOUND`` for the ``node``) is read as gone. 401
says the token is missing or invalid, 403 that it may not read the repository (or a
secondary rate limit came without ``Retry-After``, which ``PoliteClient`` turns into
``RateLimited`` when it is there); neither message holds the token, and the token is sent
to the configured origin only (a POST is never redirected).

Bad items: a post without an id or a time is rejected as ``missing_field``, one dated
before GitHub existed or in the future as ``bad_time``; neither moves the cursor (their
times are left out of the activity), and the rest is kept. ``author: null`` (a deleted,
"ghost" account) is a post without an author. A comment deleted while it has replies
(``deletedAt``) is a deleted post without author or text. Only ``author { login }`` is
asked for; a post's ``url`` names the repository and the post, not its author, and is
kept only when it is a link to a discussion of the configured repository.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from monitor.config import CommunityBase, GitHubCommunity, Settings
from monitor.errors import HTTPStatusError, MalformedResponse, RateLimited
from monitor.http import PoliteClient, parse_rate_reset, parse_retry_after, server_wait
from monitor.sources.base import Cursor, FetchResult, Item, PollInput, Source
from monitor.untrusted import for_log

log = logging.getLogger(__name__)

API_URL = "https://api.github.com"
EARLIEST = 1_199_145_600
"""2008-01-01, before GitHub opened: no post is older (an issue converted into a
discussion keeps the issue's creation time, so 2020, when Discussions came, is too late)."""
OVERLAP_SECONDS = 120
"""How far below the newest activity seen a walk looks again, for posts that became
visible a little after a newer one."""
MAX_KNOWN = 5000
"""Discussions the cursor remembers as read whole (the most recently active)."""
MAX_CURSOR_LENGTH = 512
"""Longest GitHub cursor kept (theirs are about 60 characters)."""
RATE_LIMIT_TYPES = frozenset({"RATE_LIMITED", "RATE_LIMIT"})
"""The error ``type`` of a spent GraphQL budget (both spellings have been seen)."""
DEFAULT_RATE_WAIT = 60.0

_POST_FIELDS = "id url createdAt lastEditedAt bodyText author { login }"
DISCUSSIONS_QUERY = f"""
query Discussions($owner: String!, $name: String!, $first: Int!, $after: String,
                  $categoryId: ID, $comments: Int!, $replies: Int!) {{
  rateLimit {{ cost remaining resetAt }}
  repository(owner: $owner, name: $name) {{
    hasDiscussionsEnabled
    discussions(first: $first, after: $after, categoryId: $categoryId,
                orderBy: {{field: UPDATED_AT, direction: DESC}}) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{
        {_POST_FIELDS} number title updatedAt
        comments(last: $comments) {{
          pageInfo {{ hasPreviousPage startCursor }}
          nodes {{ ...Comment }}
        }}
      }}
    }}
  }}
}}
fragment Comment on DiscussionComment {{
  {_POST_FIELDS} deletedAt
  replies(last: $replies) {{
    pageInfo {{ hasPreviousPage startCursor }}
    nodes {{ {_POST_FIELDS} deletedAt }}
  }}
}}
"""
COMMENTS_QUERY = f"""
query DiscussionComments($id: ID!, $last: Int!, $before: String, $replies: Int!) {{
  rateLimit {{ cost remaining resetAt }}
  node(id: $id) {{
    ... on Discussion {{
      comments(last: $last, before: $before) {{
        pageInfo {{ hasPreviousPage startCursor }}
        nodes {{
          {_POST_FIELDS} deletedAt
          replies(last: $replies) {{
            pageInfo {{ hasPreviousPage startCursor }}
            nodes {{ {_POST_FIELDS} deletedAt }}
          }}
        }}
      }}
    }}
  }}
}}
"""
REPLIES_QUERY = f"""
query CommentReplies($id: ID!, $last: Int!, $before: String) {{
  rateLimit {{ cost remaining resetAt }}
  node(id: $id) {{
    ... on DiscussionComment {{
      replies(last: $last, before: $before) {{
        pageInfo {{ hasPreviousPage startCursor }}
        nodes {{ {_POST_FIELDS} deletedAt }}
      }}
    }}
  }}
}}
"""
CATEGORIES_QUERY = """
query DiscussionCategories($owner: String!, $name: String!) {
  rateLimit { cost remaining resetAt }
  repository(owner: $owner, name: $name) {
    hasDiscussionsEnabled
    discussionCategories(first: 100) { nodes { id name slug } }
  }
}
"""


class GraphQLFailure(MalformedResponse):
    """GitHub answered with an ``errors`` array of a type no other error stands for."""

    def __init__(self, message: str, *, host: str, url: str, error_types: tuple[str, ...]):
        super().__init__(message, host=host, url=url)
        self.error_types = error_types


class RepositoryNotFound(HTTPStatusError):
    """The repository is not there for this token (as a 404 would say), or has no discussions."""

    def __init__(self, message: str, *, repository: str, host: str, url: str) -> None:
        super().__init__(message, host=host, url=url, status=404)
        self.repository = repository


class UnknownCategory(HTTPStatusError):
    """The configured category is not one of the repository's discussion categories."""

    def __init__(self, message: str, *, category: str, host: str, url: str) -> None:
        super().__init__(message, host=host, url=url, status=404)
        self.category = category


class NodeGone(HTTPStatusError):
    """A discussion or comment listed a moment ago is not there any more (deleted)."""

    def __init__(self, message: str, *, host: str, url: str) -> None:
        super().__init__(message, host=host, url=url, status=404)


# ---------------------------------------------------------------- pure parsing


def parse_time(value: object) -> int | None:
    """UTC epoch seconds of a GitHub timestamp (``2024-09-13T17:23:09Z``), floored."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _login(raw: Mapping[str, Any]) -> str | None:
    """The author's login; None for ``author: null`` (a deleted, "ghost" account)."""
    author = raw.get("author")
    login = author.get("login") if isinstance(author, Mapping) else None
    return login if isinstance(login, str) and login else None


def _node_id(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("id")
    return value if isinstance(value, str) and value else None


def discussion_url_pattern(repository: str) -> re.Pattern[str]:
    """Links kept: a discussion of ``repository`` or one of its comments, nothing else."""
    return re.compile(
        r"https?://[^/?#\s]+/" + re.escape(repository) + r"/discussions/\d+"
        r"(?:#discussioncomment-\d+)?",
        re.IGNORECASE,
    )


def _url(raw: Mapping[str, Any], links: re.Pattern[str] | None) -> str | None:
    value = raw.get("url")
    if not isinstance(value, str) or links is None or links.fullmatch(value) is None:
        return None  # a profile link, or a link to somewhere else: never kept
    return value


def discussion_item(raw: Mapping[str, Any], *, links: re.Pattern[str] | None) -> Item | None:
    """A discussion as a thread ``Item``; None without an id or a creation time."""
    ident, created = _node_id(raw), parse_time(raw.get("createdAt"))
    if ident is None or created is None:
        return None
    return Item(
        external_id=ident,
        kind="thread",
        thread_id=ident,
        created_at=created,
        author=_login(raw),
        title=_text(raw, "title"),
        text=_text(raw, "bodyText"),
        url=_url(raw, links),
        edited_at=parse_time(raw.get("lastEditedAt")),
    )


def comment_item(
    raw: Mapping[str, Any], *, discussion: str, parent: str, links: re.Pattern[str] | None
) -> Item | None:
    """A comment (``parent`` is the discussion) or a reply (``parent`` is its comment)."""
    ident, created = _node_id(raw), parse_time(raw.get("createdAt"))
    if ident is None or created is None:
        return None
    deleted = raw.get("deletedAt") is not None
    return Item(
        external_id=ident,
        kind="reply",
        thread_id=discussion,
        parent_id=parent,
        created_at=created,
        author=None if deleted else _login(raw),
        text="" if deleted else _text(raw, "bodyText"),
        url=_url(raw, links),
        edited_at=parse_time(raw.get("lastEditedAt")),
        deleted=deleted,
    )


@dataclass(slots=True)
class Connection:
    """One page of a connection read back to front (``last``/``before``)."""

    nodes: list[Mapping[str, Any]]
    has_previous: bool
    start_cursor: str | None


def connection(raw: object, *, what: str, host: str, url: str) -> Connection:
    """The nodes (oldest first, as GitHub lists them) and the way further back."""
    info = raw.get("pageInfo") if isinstance(raw, Mapping) else None
    nodes = raw.get("nodes") if isinstance(raw, Mapping) else None
    if not isinstance(info, Mapping) or not isinstance(nodes, list):
        raise MalformedResponse(
            f"{host} sent {what} without nodes and pageInfo", host=host, url=url
        )
    start = info.get("startCursor")
    cursor = start if isinstance(start, str) and 0 < len(start) <= MAX_CURSOR_LENGTH else None
    more = info.get("hasPreviousPage") is True and cursor is not None
    return Connection([n for n in nodes if isinstance(n, Mapping)], more, cursor)


def post_times(raw: Mapping[str, Any]) -> list[int | None]:
    """Creation times of a discussion and of the comments and replies its page shows."""
    times: list[int | None] = [parse_time(raw.get("createdAt"))]
    comments = raw.get("comments")
    for comment in comments.get("nodes") or [] if isinstance(comments, Mapping) else []:
        if not isinstance(comment, Mapping):
            continue
        times.append(parse_time(comment.get("createdAt")))
        replies = comment.get("replies")
        for reply in replies.get("nodes") or [] if isinstance(replies, Mapping) else []:
            if isinstance(reply, Mapping):
                times.append(parse_time(reply.get("createdAt")))
    return times


def activity(raw: Mapping[str, Any], *, plausible: Callable[[int | None], bool]) -> int | None:
    """The discussion's latest activity: the latest plausible of its ``updatedAt`` and the
    creation times its page shows (None when it has none)."""
    times = [parse_time(raw.get("updatedAt")), *post_times(raw)]
    found = [moment for moment in times if moment is not None and plausible(moment)]
    return max(found) if found else None


# ---------------------------------------------------------------- cursor state


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cursor_text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_CURSOR_LENGTH else None


def _latest(*values: int | None) -> int | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


@dataclass(slots=True)
class Known:
    """A discussion read whole: its activity then, and its posts of the window before it."""

    at: int
    recent: frozenset[str]


@dataclass(slots=True)
class Pending:
    """What a cut walk left: the discussions from the page after ``after`` (from the newest
    when None) down to ``stop``, whose posts from ``floor`` on are reported."""

    after: str | None
    stop: int
    floor: int


@dataclass(slots=True)
class State:
    """The cursor, parsed (see the module doc); anything unreadable starts afresh."""

    repository: str
    category: str | None
    category_id: str | None = None
    mark: int | None = None
    floor: int | None = None
    top: int | None = None
    hole: int | None = None
    pending: Pending | None = None
    known: dict[str, Known] = field(default_factory=dict)

    @property
    def walking(self) -> bool:
        """Whether a walk spread over several polls is under way."""
        return self.floor is not None

    @classmethod
    def load(cls, cursor: Cursor, *, repository: str, category: str | None, now: int) -> State:
        fresh = cls(repository=repository, category=category)
        saved_category = cursor.get("category")
        same_scope = (
            cursor.get("repository") == repository
            and (saved_category.get("name") if isinstance(saved_category, Mapping) else None)
            == category
        )
        mark = _int(cursor.get("mark"))
        if not same_scope or (mark is not None and mark > now):
            return fresh  # another repository or category, or a mark no post can have set
        if isinstance(saved_category, Mapping):
            fresh.category_id = _cursor_text(saved_category.get("id"))
        fresh.mark = mark
        fresh.floor = _int(cursor.get("floor"))
        if fresh.floor is not None:
            fresh.top = _int(cursor.get("top"))
            fresh.hole = _int(cursor.get("hole"))
            pending = cursor.get("pending")
            if isinstance(pending, Mapping):
                after, stop, floor = (
                    _cursor_text(pending.get("after")),
                    _int(pending.get("stop")),
                    _int(pending.get("floor")),
                )
                if stop is not None and floor is not None:
                    fresh.pending = Pending(after, stop, floor)
        known = cursor.get("known")
        for key, value in known.items() if isinstance(known, Mapping) else ():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], list):
                at = _int(value[0])
                if at is not None and at <= now:
                    ids = frozenset(i for i in value[1] if isinstance(i, str))
                    fresh.known[str(key)] = Known(at, ids)
        return fresh

    def dump(self, *, keep_from: int | None) -> Cursor:
        cursor: Cursor = {"repository": self.repository}
        if self.category is not None and self.category_id is not None:
            cursor["category"] = {"name": self.category, "id": self.category_id}
        if self.mark is not None:
            cursor["mark"] = self.mark
        if self.floor is not None:
            cursor["floor"] = self.floor
            for key, value in (("top", self.top), ("hole", self.hole)):
                if value is not None:
                    cursor[key] = value
            if self.pending is not None:
                cursor["pending"] = {
                    "after": self.pending.after,
                    "stop": self.pending.stop,
                    "floor": self.pending.floor,
                }
        kept = sorted(
            (
                (key, known)
                for key, known in self.known.items()
                if keep_from is None or known.at >= keep_from
            ),
            key=lambda pair: pair[1].at,
        )[-MAX_KNOWN:]
        cursor["known"] = {key: [known.at, sorted(known.recent)] for key, known in kept}
        return cursor


# ---------------------------------------------------------------- one poll


@dataclass(slots=True)
class Run:
    """One poll's request budget and findings, shared by its walks."""

    left: int
    out_of_time: Callable[[], bool]
    items: list[Item] = field(default_factory=list)
    timed_out: bool = False
    finished: int = 0
    """Discussions finished (or found unchanged) by this poll."""

    def take(self) -> bool:
        """Whether one more request may go out (and count it)."""
        if self.out_of_time():
            self.timed_out = True
            return False
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass(slots=True)
class Walk:
    """What one walk down the list (from the newest, or from a cursor) did."""

    finished: bool = False
    position: str | None = None
    """Where a next walk goes on: the cursor of the page holding the first discussion not
    finished (the discussions finished on it are met again, unchanged, at no cost); None
    for the first page."""
    top: int | None = None
    boundary: int | None = None
    """When cut: no post in a discussion left unfinished is newer than this."""
    hole: int | None = None
    """Activity of a discussion too large to read whole, reported as far as read."""


@dataclass(slots=True)
class Scan:
    """One discussion's posts, as far as they were read."""

    items: list[Item]
    whole: bool
    seen: dict[str, int]
    """Every post read (id -> creation time), reported or not."""
    unchanged: bool = False
    """Read whole before, with no activity since: nothing was fetched."""


class GitHub(Source):
    """The discussions of one GitHub repository (optionally one category); see the module doc."""

    kind = "github"
    default_base_url = API_URL
    earliest = EARLIEST
    rate_per_minute = 60.0
    walks_by_creation = False
    discussions_page = 10
    comments_window = 10
    replies_window = 10
    follow_page = 100
    max_requests = 20
    """Requests one poll may send; a longer walk goes on in the next poll."""

    def __init__(
        self, community: CommunityBase, *, settings: Settings, client: PoliteClient
    ) -> None:
        if not isinstance(community, GitHubCommunity):
            raise TypeError(f"GitHub needs a GitHubCommunity, not {type(community).__name__}")
        super().__init__(community, settings=settings, client=client)
        self.repo = community
        self.owner, _, self.name = community.repository.partition("/")
        self.endpoint = self.base_url.rstrip("/") + "/graphql"
        self.host = httpx.URL(self.endpoint).host
        self.links = discussion_url_pattern(community.repository)
        self.state = State(repository=community.repository, category=community.category)

    def credentials(self) -> dict[str, str]:
        token = (self.settings.github.token or "").strip()
        return {"Authorization": f"bearer {token}"} if token else {}

    def walk_pending(self, cursor: Cursor) -> bool:
        return _int(cursor.get("floor")) is not None

    # ------------------------------------------------------------ the poll

    async def fetch(self, poll: PollInput) -> FetchResult:
        self.state = state = State.load(
            poll.cursor,
            repository=self.repo.repository,
            category=self.repo.category,
            now=poll.now,
        )
        run = Run(self.max_requests, self.out_of_time)
        category_id = await self._category_id(run)
        if state.pending is not None and state.pending.after is not None:
            pending = state.pending
            walk = await self._walk(run, pending.after, pending.stop, pending.floor, category_id)
            state.top = _latest(state.top, walk.top)
            state.hole = _latest(state.hole, walk.hole)
            if not walk.finished:
                state.pending = Pending(walk.position, pending.stop, pending.floor)
                # the newest discussions are not read: nothing new is vouched for
                return self._result(run, poll, complete=False, covered_from=poll.now)
            state.pending = None
        base = _latest(state.top, state.mark)
        if base is not None:
            stop = base - OVERLAP_SECONDS
        else:
            stop = state.floor if state.floor is not None else poll.since
        floor = state.floor if state.floor is not None else stop
        if state.pending is not None:  # a range that starts at the newest: it reaches further
            stop, floor = min(stop, state.pending.stop), state.pending.floor
        walk = await self._walk(run, None, stop, floor, category_id)
        hole = _latest(state.hole, walk.hole)
        if walk.finished:
            vouch = state.walking or hole is not None
            state.mark = _latest(state.mark, state.top, walk.top)
            state.mark = None if state.mark is None else min(state.mark, poll.now)
            state.floor = state.top = state.hole = None
            state.pending = None
            covered_from = None
            if vouch:
                covered_from = floor if hole is None else max(floor, hole + 1)
            return self._result(run, poll, complete=True, covered_from=covered_from)
        state.floor, state.hole = floor, hole
        state.top = _latest(state.top, walk.top)
        state.pending = Pending(walk.position, stop, floor)
        covered_from = poll.now if walk.boundary is None else walk.boundary + 1
        if hole is not None:
            covered_from = max(covered_from, hole + 1)
        return self._result(run, poll, complete=False, covered_from=min(covered_from, poll.now))

    def _result(
        self, run: Run, poll: PollInput, *, complete: bool, covered_from: int | None
    ) -> FetchResult:
        state = self.state
        if state.floor is not None:
            keep_from: int | None = state.floor
        elif state.mark is not None:
            keep_from = state.mark - OVERLAP_SECONDS
        else:
            keep_from = None
        return FetchResult(
            items=run.items,
            cursor=state.dump(keep_from=keep_from),
            complete=complete,
            covered_from=covered_from,
        )

    async def _walk(
        self, run: Run, after: str | None, stop: int, floor: int, category_id: str | None
    ) -> Walk:
        """Discussions newest-active first from ``after`` (or the newest) until one is less
        active than ``stop``, the list ends or the poll's budget or deadline does."""
        walk = Walk(position=after)
        lowest: int | None = None  # the least activity among the finished discussions
        while run.take():
            listed, following = await self._discussions(after, category_id)
            for node in listed:
                moment = activity(node, plausible=self.intake.plausible_time)
                if moment is not None and moment < stop:
                    walk.finished = True
                    return walk
                scan = await self._discussion(run, node, floor)
                if not scan.whole:
                    if run.finished or run.timed_out:
                        # half a discussion is never reported: the next poll reads it whole
                        walk.boundary = moment if moment is not None else lowest
                        return walk
                    # too large for a poll's whole budget: keep what was read, go on
                    walk.hole = _latest(walk.hole, moment)
                    log.warning(
                        "github %s: a discussion too large to read in one poll (%s)",
                        self.community.id,
                        for_log(_node_id(node)),
                    )
                run.items += scan.items
                run.finished += 1
                self._remember(node, moment, scan)
                walk.top = _latest(walk.top, moment)
                if moment is not None:
                    lowest = moment if lowest is None else min(lowest, moment)
            if following is None:
                walk.finished = True
                return walk
            walk.position = after = following
        walk.boundary = lowest
        return walk

    def _remember(self, node: Mapping[str, Any], moment: int | None, scan: Scan) -> None:
        ident = _node_id(node)
        if ident is None or moment is None or scan.unchanged:
            return
        window = moment - OVERLAP_SECONDS
        recent = frozenset(key for key, created in scan.seen.items() if created >= window)
        self.state.known[ident] = Known(min(moment, self.intake.now), recent)

    async def _discussion(self, run: Run, node: Mapping[str, Any], floor: int) -> Scan:
        """The new posts of one discussion: all of them read (``whole``), or as far as the
        budget allowed."""
        ident = _node_id(node)
        if ident is None:
            self.intake.reject("missing_field", node.get("number"))
            return Scan([], True, {})
        moment = activity(node, plausible=self.intake.plausible_time)
        known = self.state.known.get(ident)
        if known is not None and moment is not None and known.at >= moment:
            return Scan([], True, {}, unchanged=True)  # no activity since it was read whole
        since = floor if known is None else max(floor, known.at - OVERLAP_SECONDS)
        seen_before = known.recent if known is not None else frozenset()
        url = self.endpoint
        comments = connection(node.get("comments"), what="comments", host=self.host, url=url)
        nodes = list(comments.nodes)
        whole = True
        before = comments.start_cursor if comments.has_previous else None
        try:
            while before is not None:
                if not run.take():
                    whole = False
                    break
                older = await self._follow(COMMENTS_QUERY, ident, before, replies=True)
                nodes = older.nodes + nodes
                before = older.start_cursor if older.has_previous else None
            replies: dict[str, list[Mapping[str, Any]]] = {}
            for comment in nodes:
                shown, ok = await self._replies(run, comment, since)
                whole = whole and ok
                if (key := _node_id(comment)) is not None:
                    replies[key] = shown
        except NodeGone:
            return Scan([], True, {})  # deleted while we read it: nothing of it is left
        return self._posts(node, nodes, replies, since=since, seen_before=seen_before, whole=whole)

    async def _replies(
        self, run: Run, comment: Mapping[str, Any], since: int
    ) -> tuple[list[Mapping[str, Any]], bool]:
        """A comment's replies back to ``since`` (and whether the budget allowed it)."""
        page = connection(comment.get("replies"), what="replies", host=self.host, url=self.endpoint)
        shown = list(page.nodes)
        more, before = page.has_previous, page.start_cursor
        ident = _node_id(comment)
        while more and before is not None and ident is not None:
            oldest = parse_time(shown[0].get("createdAt")) if shown else None
            if oldest is not None and oldest < since:
                break  # replies are listed oldest first: the rest are older still
            if not run.take():
                return shown, False
            older = await self._follow(REPLIES_QUERY, ident, before, replies=False)
            shown = older.nodes + shown
            more, before = older.has_previous, older.start_cursor
        return shown, True

    def _posts(
        self,
        node: Mapping[str, Any],
        comments: Sequence[Mapping[str, Any]],
        replies: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        since: int,
        seen_before: frozenset[str],
        whole: bool,
    ) -> Scan:
        """The discussion's posts created at or after ``since`` and not reported before."""
        ident = _node_id(node) or ""
        found: list[tuple[Mapping[str, Any], Item | None]] = [
            (node, discussion_item(node, links=self.links))
        ]
        for comment in comments:
            found.append(
                (comment, comment_item(comment, discussion=ident, parent=ident, links=self.links))
            )
            parent = _node_id(comment)
            for reply in replies.get(parent or "", ()):
                item = None
                if parent is not None:
                    item = comment_item(reply, discussion=ident, parent=parent, links=self.links)
                found.append((reply, item))
        items: list[Item] = []
        seen: dict[str, int] = {}
        for raw, item in found:
            if item is None:
                self.intake.reject("missing_field", _node_id(raw))
                continue
            if not self.intake.plausible_time(item.created_at):
                self.intake.admit(item)  # rejected as bad_time, and counted
                continue
            seen[item.external_id] = item.created_at
            if item.created_at < since or item.external_id in seen_before:
                continue
            admitted = self.intake.admit(item)
            if admitted is not None:
                items.append(admitted)
        return Scan(items, whole, seen)

    # ------------------------------------------------------------ requests

    async def _discussions(
        self, after: str | None, category_id: str | None
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        """One page of discussions and the cursor of the next page (None at the end)."""
        data = await self._query(
            DISCUSSIONS_QUERY,
            "Discussions",
            {
                "owner": self.owner,
                "name": self.name,
                "first": self.discussions_page,
                "after": after,
                "categoryId": category_id,
                "comments": self.comments_window,
                "replies": self.replies_window,
            },
        )
        listing = self._repository(data).get("discussions")
        info = listing.get("pageInfo") if isinstance(listing, Mapping) else None
        nodes = listing.get("nodes") if isinstance(listing, Mapping) else None
        if not isinstance(info, Mapping) or not isinstance(nodes, list):
            raise self._malformed("discussions without nodes and pageInfo")
        listed: list[Mapping[str, Any]] = []
        for node in nodes:
            if isinstance(node, Mapping):
                listed.append(node)
            else:
                self.intake.reject("missing_field")
        end = _cursor_text(info.get("endCursor"))
        if info.get("hasNextPage") is True and end is None:
            raise self._malformed("a page of discussions with a next page but no endCursor")
        return listed, end if info.get("hasNextPage") is True else None

    async def _follow(self, query: str, ident: str, before: str, *, replies: bool) -> Connection:
        """The page before ``before`` of a discussion's comments or a comment's replies."""
        variables: dict[str, Any] = {"id": ident, "last": self.follow_page, "before": before}
        if replies:
            variables["replies"] = self.replies_window
        name = "DiscussionComments" if replies else "CommentReplies"
        data = await self._query(query, name, variables, follow_up=True)
        node = data.get("node")
        if node is None:
            raise NodeGone(
                f"{self.host}: {for_log(ident)} is gone", host=self.host, url=self.endpoint
            )
        key = "comments" if replies else "replies"
        what = "comments" if replies else "replies"
        raw = node.get(key) if isinstance(node, Mapping) else None
        return connection(raw, what=what, host=self.host, url=self.endpoint)

    async def _category_id(self, run: Run) -> str | None:
        """The id of the configured category: from the cursor, else asked once."""
        wanted = self.repo.category
        if wanted is None:
            return None
        if self.state.category_id is not None:
            return self.state.category_id
        run.left -= 1
        data = await self._query(
            CATEGORIES_QUERY, "DiscussionCategories", {"owner": self.owner, "name": self.name}
        )
        listing = self._repository(data).get("discussionCategories")
        nodes = listing.get("nodes") if isinstance(listing, Mapping) else None
        if not isinstance(nodes, list):
            raise self._malformed("discussion categories without nodes")
        names: list[str] = []
        for category in nodes:
            if not isinstance(category, Mapping):
                continue
            name, slug, ident = category.get("name"), category.get("slug"), _node_id(category)
            labels = {str(v).lower() for v in (name, slug) if isinstance(v, str)}
            if wanted.lower() in labels and ident is not None:
                self.state.category_id = ident
                return ident
            names.append(for_log(slug if isinstance(slug, str) else name, limit=40))
        raise UnknownCategory(
            f"{self.repo.repository} has no discussion category {wanted!r} "
            f"(it has {', '.join(names[:25]) or 'none'})",
            category=wanted,
            host=self.host,
            url=self.endpoint,
        )

    def _repository(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        repository = data.get("repository")
        if not isinstance(repository, Mapping):
            raise self._not_found("is not there (or this token may not see it)")
        if repository.get("hasDiscussionsEnabled") is False:
            raise self._not_found("has discussions turned off")
        return repository

    def _not_found(self, why: str) -> RepositoryNotFound:
        return RepositoryNotFound(
            f"the GitHub repository {self.repo.repository} {why}",
            repository=self.repo.repository,
            host=self.host,
            url=self.endpoint,
        )

    def _malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(f"{self.host} sent {what}", host=self.host, url=self.endpoint)

    async def _query(
        self, query: str, name: str, variables: Mapping[str, Any], *, follow_up: bool = False
    ) -> Mapping[str, Any]:
        """POST one GraphQL query; its ``data``, or the failure its ``errors`` stand for."""
        self.client.set_rate(self.host, self.rate_for(self.host))
        try:
            response = await self.client.request(
                "POST",
                self.endpoint,
                headers=self.headers(),
                credentials=self.credentials(),
                json={"query": query, "variables": dict(variables), "operationName": name},
                counter=self.counter,
            )
        except RateLimited:
            raise
        except HTTPStatusError as exc:
            if exc.status == 401:
                raise HTTPStatusError(
                    f"{self.host} answered 401: the GitHub token ([github] token or "
                    "FORUM_MONITOR_GITHUB_TOKEN) is missing, expired or revoked",
                    host=self.host,
                    url=self.endpoint,
                    status=401,
                ) from exc
            if exc.status == 403:
                raise HTTPStatusError(
                    f"{self.host} answered 403: the GitHub token may not read "
                    f"{self.repo.repository} (or a secondary rate limit came without "
                    "Retry-After)",
                    host=self.host,
                    url=self.endpoint,
                    status=403,
                ) from exc
            raise
        body = response.json()
        if not isinstance(body, Mapping):
            raise self._malformed("a GraphQL answer that is not an object")
        errors = body.get("errors")
        if errors is not None and (not isinstance(errors, list) or errors):
            raise self._failure(errors, response.headers, follow_up=follow_up)
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise self._malformed("a GraphQL answer without data or errors")
        self._note_budget(data.get("rateLimit"))
        return data

    def _note_budget(self, raw: object) -> None:
        """``rateLimit { remaining resetAt }``: the gauge, and a pause once it is spent."""
        if not isinstance(raw, Mapping):
            return
        remaining, reset_at = _int(raw.get("remaining")), parse_time(raw.get("resetAt"))
        if remaining is None:
            return
        wait = DEFAULT_RATE_WAIT if reset_at is None else reset_at - time.time()
        self.client.note_rate_limit(self.host, remaining=remaining, reset_after=wait)

    def _failure(
        self, errors: object, headers: httpx.Headers, *, follow_up: bool
    ) -> HTTPStatusError | MalformedResponse:
        entries = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
        types = tuple(sorted({e["type"] for e in entries if isinstance(e.get("type"), str)}))
        message = entries[0].get("message") if entries else None
        said = f" ({for_log(message)})" if isinstance(message, str) else ""
        if RATE_LIMIT_TYPES.intersection(types):
            wait = parse_retry_after(headers.get("retry-after"), now=time.time())
            if wait is None:
                reset = headers.get("x-ratelimit-reset")
                wait = parse_rate_reset(reset, now=time.time(), default=DEFAULT_RATE_WAIT)
            wait = server_wait(wait)
            self.client.note_rate_limit(self.host, remaining=0, reset_after=wait)
            return RateLimited(
                f"{self.host}: GitHub's GraphQL rate limit is spent ({'/'.join(types)}); "
                f"retry after {wait:.0f}s",
                host=self.host,
                url=self.endpoint,
                status=429,
                retry_after=wait,
            )
        if "NOT_FOUND" in types:
            paths = [e.get("path") for e in entries if e.get("type") == "NOT_FOUND"]
            if follow_up and any(isinstance(p, list) and p[:1] == ["node"] for p in paths):
                return NodeGone(
                    f"{self.host}: a node is gone{said}", host=self.host, url=self.endpoint
                )
            return self._not_found(f"is not there (or this token may not see it){said}")
        if "FORBIDDEN" in types:
            return HTTPStatusError(
                f"{self.host}: the GitHub token may not read {self.repo.repository}{said}",
                host=self.host,
                url=self.endpoint,
                status=403,
            )
        kinds = "/".join(for_log(t, limit=40) for t in types) or "untyped"
        return GraphQLFailure(
            f"{self.host} answered GraphQL errors ({kinds}){said}",
            host=self.host,
            url=self.endpoint,
            error_types=types,
        )
