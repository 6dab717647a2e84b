"""A fake Reddit: several subreddits' submissions and comments, in Reddit's JSON shape.

Serves, for every subreddit added:

- ``/r/{sub}/new.json`` and ``/r/{sub}/comments.json`` (also without ``.json``
  and with a trailing slash, as oauth.reddit.com is called), newest first, with
  ``limit`` (default 25, at most 100), ``after``/``before`` fullnames and
  ``dist``. Like Reddit, ``before=<a deleted or removed item>`` answers an
  empty listing.
- ``POST /api/v1/access_token``: the client-credentials grant, when the fake is
  given ``client_id``/``client_secret``; with ``require_auth`` the listings then
  answer 401 without a valid ``Authorization: bearer`` token.
- ``X-Ratelimit-Used/-Remaining/-Reset`` on every listing, Remaining as a float
  the way Reddit sends it.

Items render with the fields of the recorded real responses (a subset of them);
deleted and removed items render as Reddit shows them to a non-moderator.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

from monitor.fakeforum.server import (
    FakeForumServer,
    FakeResponse,
    Request,
    Router,
    query_value,
)

State = Literal["live", "deleted", "removed"]
LOCAL_TIME_OFFSET = 28800.0
"""Reddit's legacy ``created`` field is ``created_utc`` plus 8 hours (as recorded)."""
DEFAULT_LIMIT = 25
MAX_LIMIT = 100


@dataclass
class FakePost:
    """One submission (``t3``) or comment (``t1``)."""

    kind: Literal["t1", "t3"]
    id: str
    subreddit: str
    created_utc: float
    author: str
    text: str
    title: str = ""
    thread: str = ""
    """The submission's fullname (comments only)."""
    parent: str = ""
    """The parent's fullname (comments only)."""
    edited: float | bool = False
    state: State = "live"
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Raw fields that replace the rendered ones (for hostile-data tests)."""

    @property
    def fullname(self) -> str:
        return f"{self.kind}_{self.id}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


@dataclass
class _Token:
    value: str
    expires_at: float


@dataclass
class FakeReddit:
    """In-memory subreddits; ``register`` its routes on a ``Router`` or call ``server()``."""

    client_id: str | None = None
    client_secret: str | None = None
    require_auth: bool = False
    token_lifetime: int = 3600
    rate_budget: int = 1000
    rate_window: int = 600
    listing_limit: int = 1000
    """Items a listing reaches back at most, as Reddit's own listings do; then ``after``
    is null as if the subreddit began there."""
    clock: Callable[[], float] = time.time
    posts: dict[str, FakePost] = field(default_factory=dict)
    """Fullname -> post, every subreddit."""
    subreddits: set[str] = field(default_factory=set)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._next = {"t3": int("hp0000", 36), "t1": int("fxm000", 36)}
        self._tokens: dict[str, _Token] = {}
        self._window_start = self.clock()
        self._used = 0
        # per (subreddit, kind) and per submission, so a listing costs what its subreddit
        # holds, not what every subreddit holds (benchmarks add a thousand of them)
        self._listed: dict[tuple[str, str], list[FakePost]] = {}
        self._replies: dict[str, int] = {}

    # -- content -------------------------------------------------------------

    def add_subreddit(self, name: str) -> None:
        with self._lock:
            self.subreddits.add(name.lower())

    def _add(self, post: FakePost) -> str:
        with self._lock:
            self.subreddits.add(post.subreddit.lower())
            if not post.id:
                post.id = _base36(self._next[post.kind])
                self._next[post.kind] += 1
            post.seq = len(self.posts)
            self.posts[post.fullname] = post
            self._listed.setdefault((post.subreddit.lower(), post.kind), []).append(post)
            if post.kind == "t1":
                self._replies[post.thread] = self._replies.get(post.thread, 0) + 1
        return post.fullname

    def add_thread(
        self,
        subreddit: str,
        *,
        created: float | None = None,
        author: str = "fake_member",
        title: str = "A thread",
        text: str = "",
        id: str = "",
    ) -> str:
        """Add a submission; returns its fullname (``t3_...``)."""
        when = self.clock() if created is None else created
        return self._add(FakePost("t3", id, subreddit, float(when), author, text, title=title))

    def add_reply(
        self,
        thread: str,
        *,
        parent: str | None = None,
        created: float | None = None,
        author: str = "fake_member",
        text: str = "A reply",
        id: str = "",
    ) -> str:
        """Add a comment on submission ``thread`` (a fullname), answering ``parent``."""
        submission = self.posts[thread]
        when = self.clock() if created is None else created
        post = FakePost("t1", id, submission.subreddit, float(when), author, text)
        post.thread, post.parent = thread, parent or thread
        return self._add(post)

    def delete(self, fullname: str) -> None:
        """The author deleted it."""
        self.posts[fullname].state = "deleted"

    def remove(self, fullname: str) -> None:
        """A moderator removed it."""
        self.posts[fullname].state = "removed"

    def edit(self, fullname: str, *, text: str, at: float) -> None:
        post = self.posts[fullname]
        post.text, post.edited = text, float(at)

    def issue_token(self) -> str:
        """Hand out a token directly (tests of an expired or revoked token)."""
        with self._lock:
            self.tokens_issued += 1
            value = f"fake-token-{self.tokens_issued}"
            self._tokens[value] = _Token(value, self.clock() + self.token_lifetime)
        return value

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # -- rendering -----------------------------------------------------------

    def render(self, post: FakePost) -> dict[str, Any]:
        """``{"kind", "data"}`` as a listing child, in the recorded field names."""
        gone = post.state != "live"
        author = "[deleted]" if gone else post.author
        text = {"live": post.text, "deleted": "[deleted]", "removed": "[removed]"}[post.state]
        slug = "thread"
        thread = self.posts[post.thread] if post.kind == "t1" else post
        permalink = f"/r/{post.subreddit}/comments/{thread.id}/{slug}/"
        data: dict[str, Any] = {
            "id": post.id,
            "name": post.fullname,
            "subreddit": post.subreddit,
            "subreddit_name_prefixed": f"r/{post.subreddit}",
            "author": author,
            "created_utc": post.created_utc,
            "created": post.created_utc + LOCAL_TIME_OFFSET,
            "edited": post.edited,
            "score": 1,
            "stickied": False,
        }
        if not gone:
            data["author_fullname"] = f"t2_{post.author.lower()}"
        if post.kind == "t3":
            replies = self._replies.get(post.fullname, 0)
            data.update(
                title=post.title,
                selftext=text,
                is_self=True,
                num_comments=replies,
                permalink=permalink,
                url=f"https://www.reddit.com{permalink}",
                removed_by_category={"live": None, "deleted": "deleted", "removed": "moderator"}[
                    post.state
                ],
            )
        else:
            data.update(
                body=text,
                link_id=post.thread,
                parent_id=post.parent,
                link_title=thread.title,
                permalink=f"{permalink}{post.id}/",
                replies="",
                is_submitter=post.author == thread.author,
            )
        data.update(post.extra)
        return {"kind": post.kind, "data": data}

    def listing(
        self,
        subreddit: str,
        kind: Literal["t1", "t3"],
        *,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        """One page of a subreddit's submissions (t3) or comments (t1), newest first."""
        with self._lock:
            wanted = self._listed.get((subreddit, kind), [])
            ordered = sorted(wanted, key=lambda p: (p.created_utc, p.seq), reverse=True)
            ordered = ordered[: self.listing_limit]
            names = [p.fullname for p in ordered]
            limit = max(1, min(limit, MAX_LIMIT))
            if before is not None:
                anchor = self.posts.get(before)
                end = names.index(before) if before in names else 0
                if anchor is None or anchor.state != "live":
                    end = 0  # Reddit: nothing comes "before" a deleted item
                start = max(0, end - limit)
            else:
                start = names.index(after) + 1 if after in names else 0
                end = start + limit
            page = ordered[start:end]
            children = [self.render(p) for p in page]
        more_after = bool(page) and end < len(ordered)
        paged = after is not None or before is not None
        return {
            "kind": "Listing",
            "data": {
                "after": page[-1].fullname if more_after else None,
                "dist": len(children),
                "modhash": "",
                "geo_filter": "",
                "children": children,
                "before": page[0].fullname if paged and page and start > 0 else None,
            },
        }

    # -- HTTP ----------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.add("/api/v1/access_token", self._token_endpoint)
        router.add(lambda path: _listing_route(path) is not None, self._listing_endpoint)

    def server(self, *, port: int = 0) -> FakeForumServer:
        """A server (not yet started) with this fake's routes."""
        router = Router()
        self.register(router)
        return FakeForumServer(router, port=port)

    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            now = self.clock()
            if now - self._window_start >= self.rate_window:
                self._window_start, self._used = now, 0
            self._used += 1
            left = max(0, self.rate_budget - self._used)
            reset = math.ceil(self._window_start + self.rate_window - now)
        return {
            "x-ratelimit-used": str(self._used),
            "x-ratelimit-remaining": f"{left:.1f}",
            "x-ratelimit-reset": str(reset),
        }

    def _authorized(self, request: Request) -> bool:
        if not self.require_auth:
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            token = self._tokens.get(value)
            return (
                scheme.lower() == "bearer"
                and token is not None
                and (token.expires_at > self.clock())
            )

    def _listing_endpoint(self, request: Request) -> FakeResponse:
        headers = self._rate_headers()
        route = _listing_route(request.path)
        assert route is not None
        subreddit, kind = route
        if not self._authorized(request):
            return _json({"message": "Unauthorized", "error": 401}, 401, headers)
        if subreddit not in self.subreddits:
            return _json({"message": "Not Found", "error": 404}, 404, headers)
        try:
            limit = int(query_value(request.query, "limit", str(DEFAULT_LIMIT)) or DEFAULT_LIMIT)
        except ValueError:
            limit = DEFAULT_LIMIT
        payload = self.listing(
            subreddit,
            kind,
            limit=limit,
            after=query_value(request.query, "after"),
            before=query_value(request.query, "before"),
        )
        return _json(payload, 200, headers)

    def _token_endpoint(self, request: Request) -> FakeResponse:
        if self.client_id is None or self.client_secret is None:
            return FakeResponse.json({"message": "Not Found", "error": 404}, 404)
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return FakeResponse.json({"message": "Unauthorized", "error": 401}, 401)
        if _form_value(request, "grant_type") != "client_credentials":
            return FakeResponse.json({"error": "unsupported_grant_type"})
        value = self.issue_token()
        return FakeResponse.json(
            {
                "access_token": value,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": "*",
            }
        )


def _form_value(request: Request, name: str) -> str | None:
    """A form field from the POST body (or the query string)."""
    form = parse_qs(request.body.decode("utf-8", "replace"))
    return query_value(form, name) or query_value(request.query, name)


def _json(payload: Any, status: int, headers: dict[str, str]) -> FakeResponse:
    response = FakeResponse.json(payload, status)
    response.headers.update(headers)
    return response


def _listing_route(path: str) -> tuple[str, Literal["t1", "t3"]] | None:
    """(subreddit, kind) for ``/r/{sub}/new[.json][/]`` or ``/r/{sub}/comments[.json][/]``."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "r":
        return None
    name = parts[2].removesuffix(".json")
    if name == "new":
        return parts[1].lower(), "t3"
    if name == "comments":
        return parts[1].lower(), "t1"
    return None
