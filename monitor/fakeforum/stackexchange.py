"""A fake Stack Exchange API 2.3: one site's questions, answers and comments on 127.0.0.1.

Serves, under ``prefix``: ``/2.3/questions`` (``tagged``: all of the tags),
``/2.3/answers``, ``/2.3/comments`` with ``sort=creation``, ``order`` (default desc),
``fromdate``/``todate`` (inclusive seconds), ``page``, ``pagesize`` (default 30, at most
100), ``filter`` (``default`` or ``withbody``); and ``/2.3/questions/{ids}``,
``/2.3/answers/{ids}`` (up to 100 ids, semicolon separated). Items are rendered in the
shapes of the recorded responses (shared/real-samples/stackexchange), in the wrapper
``items, has_more, quota_max, quota_remaining`` (and ``backoff`` when set), minified and
gzipped like every answer of the real API, errors included.

Errors are answered as the API does: HTTP 400 with ``{error_id, error_name,
error_message}`` (``bad_parameter`` for a missing or unknown ``site`` or a bad parameter,
``no_method`` for an unknown path, ``throttle_violation`` once the day's quota is spent).
The quota starts at 300 a day, or 10,000 when a ``key`` is sent, and falls by one a
request. ``set_backoff`` adds ``backoff`` to a method's next answers.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.fakeforum.server import FakeResponse, Request, Router, query_value

API = "/2.3"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 30
QUOTA = {False: 300, True: 10_000}
VECTOR = re.compile(r"/(questions|answers)/([0-9;]+)")
LICENSE = "CC BY-SA 4.0"

PostKind = Literal["question", "answer", "comment"]


@dataclass
class FakePost:
    id: int
    kind: PostKind
    created: int
    author: str | None
    """A display name (its user id is derived from it); None: a deleted account."""
    body: str
    question_id: int | None = None
    post_id: int | None = None
    title: str = ""
    tags: tuple[str, ...] = ()
    closed: bool = False
    edited: int | None = None
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    """Raw fields that replace the rendered ones (for hostile-data tests)."""


def user_id(name: str) -> int:
    """A stable user id for a display name."""
    return zlib.crc32(name.encode()) % 90_000_000 + 1_000


class FakeStackExchange:
    """One site (``site``) of the Stack Exchange API, served at ``prefix`` on a ``Router``."""

    def __init__(self, *, site: str = "stackoverflow", prefix: str = "", first_id: int = 1000):
        self.site = site
        self.prefix = prefix
        self.posts: dict[int, FakePost] = {}
        """Questions and answers (one id sequence), by id."""
        self.comments: dict[int, FakePost] = {}
        self._next_post = first_id
        self._next_comment = first_id * 100
        self.quota_used: dict[bool, int] = {False: 0, True: 0}
        self.quota_reset_in = 3600
        """What a ``throttle_violation`` says until more requests are available (seconds)."""
        self.backoffs: dict[str, list[int]] = {}
        """Method -> the ``backoff`` of its next answers, in order."""
        self.after_listing: Callable[[str, int], None] | None = None
        """Called with (method, page) after a listing page is answered: a test's way to
        change the site between two pages of one walk."""
        self.rewrite: Callable[[bytes], bytes] | None = None
        """Applied to each JSON body before it is gzipped (a test's way to put on the wire
        what ``json.dumps`` never writes)."""
        self._lock = threading.Lock()

    # ------------------------------------------------------------ building the site

    def add_question(
        self,
        *,
        created: int,
        author: str | None = "asker",
        title: str = "How do I get paid?",
        body: str = "<p>My payment is late.</p>",
        tags: tuple[str, ...] = ("gig",),
        closed: bool = False,
    ) -> int:
        with self._lock:
            number = self._next_post
            self._next_post += 1
            self.posts[number] = FakePost(
                number, "question", created, author, body, title=title, tags=tags, closed=closed
            )
            return number

    def add_answer(
        self,
        question: int,
        *,
        created: int,
        author: str | None = "helper",
        body: str = "<p>Ask support.</p>",
    ) -> int:
        with self._lock:
            number = self._next_post
            self._next_post += 1
            self.posts[number] = FakePost(
                number, "answer", created, author, body, question_id=question
            )
            return number

    def add_comment(
        self,
        post: int,
        *,
        created: int,
        author: str | None = "commenter",
        body: str = "Same here.",
    ) -> int:
        with self._lock:
            number = self._next_comment
            self._next_comment += 1
            self.comments[number] = FakePost(number, "comment", created, author, body, post_id=post)
            return number

    def edit(self, post: int, *, body: str, at: int) -> None:
        with self._lock:
            self.posts[post].body, self.posts[post].edited = body, at

    def delete(self, post: int) -> None:
        with self._lock:
            self.posts[post].deleted = True

    def set_backoff(self, method: str, seconds: int, *, times: int = 1) -> None:
        """The next ``times`` answers of ``method`` (``questions``, ``answers/{ids}``, ...)
        carry ``backoff: seconds``."""
        with self._lock:
            self.backoffs.setdefault(method, []).extend([seconds] * times)

    def question_of(self, item: FakePost) -> FakePost | None:
        """The question a post or comment belongs to."""
        if item.kind == "question":
            return item
        if item.kind == "answer":
            return self.posts.get(item.question_id or 0)
        post = self.posts.get(item.post_id or 0)
        return None if post is None else self.question_of(post)

    # ------------------------------------------------------------ rendering

    def owner(self, author: str | None) -> dict[str, Any]:
        if author is None:
            return {"display_name": "user4242", "user_type": "does_not_exist"}
        uid = user_id(author)
        return {
            "account_id": uid + 7,
            "reputation": 101,
            "user_id": uid,
            "user_type": "registered",
            "profile_image": f"https://www.gravatar.com/avatar/{uid:032x}?s=256&d=identicon&r=PG",
            "display_name": author,
            "link": f"https://{self.site}.com/users/{uid}/{author.lower()}",
        }

    def render(self, item: FakePost, *, body: bool = True) -> dict[str, Any]:
        """A question, answer or comment in the shape of the recorded responses."""
        raw: dict[str, Any] = {"owner": self.owner(item.author)}
        if item.kind == "question":
            answers = [p for p in self.posts.values() if p.question_id == item.id and not p.deleted]
            raw |= {
                "tags": list(item.tags),
                "is_answered": bool(answers),
                "view_count": 10 + len(answers),
                "answer_count": len(answers),
                "score": 0,
                "last_activity_date": max([item.created, *(a.created for a in answers)]),
                "creation_date": item.created,
                "question_id": item.id,
                "content_license": LICENSE,
                "link": f"https://{self.site}.com/questions/{item.id}/how-do-i-get-paid",
                "title": html.escape(item.title),
            }
            if item.closed:
                raw["closed_date"] = item.created + 60
                raw["closed_reason"] = "Needs details or clarity"
        elif item.kind == "answer":
            raw |= {
                "is_accepted": False,
                "score": 0,
                "last_activity_date": item.edited or item.created,
                "creation_date": item.created,
                "answer_id": item.id,
                "question_id": item.question_id,
                "content_license": LICENSE,
            }
        else:
            raw |= {
                "edited": False,
                "score": 0,
                "creation_date": item.created,
                "post_id": item.post_id,
                "comment_id": item.id,
                "content_license": LICENSE,
            }
        if item.edited is not None and item.kind != "comment":
            raw["last_edit_date"] = item.edited
        if body:
            raw["body"] = item.body
        return {**raw, **item.extra}

    # ------------------------------------------------------------ serving

    def register(self, router: Router) -> None:
        router.add(lambda path: path.startswith(self.prefix + API + "/"), self._serve)

    def _answer(self, payload: dict[str, Any], status: int = 200) -> FakeResponse:
        body = json.dumps(payload, separators=(",", ":")).encode()
        if self.rewrite is not None:
            body = self.rewrite(body)
        headers = {"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"}
        return FakeResponse(status, gzip.compress(body), headers)

    def _error(self, error_id: int, name: str, message: str) -> FakeResponse:
        return self._answer(
            {"error_id": error_id, "error_name": name, "error_message": message}, status=400
        )

    def _serve(self, request: Request) -> FakeResponse:
        path = request.path[len(self.prefix + API) :]
        keyed = bool(query_value(request.query, "key"))
        with self._lock:
            if self.quota_used[keyed] >= QUOTA[keyed]:
                return self._error(
                    502,
                    "throttle_violation",
                    "too many requests from this IP, more requests available in "
                    f"{self.quota_reset_in} seconds",
                )
            self.quota_used[keyed] += 1
            site = query_value(request.query, "site")
            if not site:
                return self._error(400, "bad_parameter", "site is required")
            if site != self.site:
                return self._error(400, "bad_parameter", f"No site found for name `{site}`")
            try:
                if path in ("/questions", "/answers", "/comments"):
                    items, more, method = self._listing(path[1:], request)
                elif match := VECTOR.fullmatch(path):
                    items, more = self._vector(match.group(1), match.group(2)), False
                    method = f"{match.group(1)}/{{ids}}"
                else:
                    return self._error(404, "no_method", "no method found with this name")
            except ValueError as exc:
                return self._error(400, "bad_parameter", str(exc))
            wrapper: dict[str, Any] = {"items": items, "has_more": more}
            if waits := self.backoffs.get(method):
                wrapper["backoff"] = waits.pop(0)
            wrapper |= {
                "quota_max": QUOTA[keyed],
                "quota_remaining": QUOTA[keyed] - self.quota_used[keyed],
            }
            response = self._answer(wrapper)
        if self.after_listing is not None and not method.endswith("{ids}"):
            self.after_listing(method, _number(request.query, "page", 1))
        return response

    def _listing(self, kind: str, request: Request) -> tuple[list[dict[str, Any]], bool, str]:
        query = request.query
        sort = query_value(query, "sort", "activity")
        if sort != "creation":
            raise ValueError("sort: this fake sorts by creation only")
        order = query_value(query, "order", "desc")
        if order not in ("asc", "desc"):
            raise ValueError("order")
        fromdate = _number(query, "fromdate", 0)
        todate = _number(query, "todate", 2**62)
        page = _number(query, "page", 1)
        size = _number(query, "pagesize", DEFAULT_PAGE_SIZE)
        if page < 1 or not 0 <= size <= MAX_PAGE_SIZE:
            raise ValueError("pagesize")
        body = self._body(query)
        wanted = {"questions": "question", "answers": "answer", "comments": "comment"}[kind]
        pool = self.comments if kind == "comments" else self.posts
        tags = {t.lower() for t in (query_value(query, "tagged") or "").split(";") if t}
        listed = sorted(
            (
                p
                for p in pool.values()
                if p.kind == wanted
                and not p.deleted
                and fromdate <= p.created <= todate
                and (kind != "questions" or tags <= {t.lower() for t in p.tags})
                and self._alive(p)
            ),
            key=lambda p: (p.created, p.id),
            reverse=order == "desc",
        )
        start = (page - 1) * size
        shown = listed[start : start + size]
        return [self.render(p, body=body) for p in shown], len(listed) > start + size, kind

    def _alive(self, item: FakePost) -> bool:
        """A deleted post's answers and comments go with it."""
        question = self.question_of(item)
        if item.kind == "comment":
            post = self.posts.get(item.post_id or 0)
            if post is None or post.deleted:
                return False
        return question is not None and not question.deleted

    def _vector(self, kind: str, ids: str) -> list[dict[str, Any]]:
        numbers = [int(n) for n in ids.split(";") if n]
        if len(numbers) > MAX_PAGE_SIZE:
            raise ValueError("ids: at most 100")
        wanted = "question" if kind == "questions" else "answer"
        found = [
            p
            for n in numbers
            if (p := self.posts.get(n)) is not None
            and p.kind == wanted
            and not p.deleted
            and self._alive(p)
        ]
        return [self.render(p, body=False) for p in found]

    @staticmethod
    def _body(query: dict[str, list[str]]) -> bool:
        name = query_value(query, "filter", "default")
        if name not in ("default", "withbody"):
            raise ValueError(f"filter: this fake knows default and withbody, not {name}")
        return name == "withbody"


def _number(query: dict[str, list[str]], name: str, default: int) -> int:
    value = query_value(query, name)
    if value is None:
        return default
    if not value.lstrip("-").isdigit():
        raise ValueError(name)
    return int(value)
