"""A fake Discourse forum: categories, topics and posts, in Discourse's JSON shape.

Each ``FakeDiscourse`` is one forum under a path prefix (like a Discourse
installed in a subfolder), so several forums share one server: register each on
the same ``Router`` and point an adapter at ``server.base_url + prefix``.
It serves, as the recorded real responses (../shared/real-samples/discourse)
show them:

- ``/posts.json``: regular, visible, not deleted posts, ids descending, 50 a
  page, ``?before=<id>`` for posts with a lower id (hand-made entries from
  ``add_raw_post`` among them, in the place their ``listed_as`` gives);
- ``/latest.json``: topics by last activity, 30 a page, ``?page=N``, with
  ``topic_list.more_topics_url`` on every page but the last;
- ``/t/{id}.json`` and ``/t/{slug}/{id}.json``: the topic with its first 20
  posts inline and every post id in ``post_stream.stream``; ``?page=N`` for the
  next 20;
- ``/categories.json``: top-level categories with ``subcategory_ids``
  (``subcategory_list`` too with ``?include_subcategories=true``).

Every JSON answer carries an ETag and honours ``If-None-Match`` with a 304.
With ``api_key`` set, requests without a matching ``Api-Key`` header get 403,
as a login-required forum answers. Rate limits (429 + Retry-After) come from
the server's fault injection. Post ids are handed out in the order posts are
added, as Discourse does, so add them oldest first.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.fakeforum.server import FakeResponse, Request, Router, query_value

POSTS_PAGE_SIZE = 50
TOPICS_PER_PAGE = 30
CHUNK_SIZE = 20
REGULAR, MODERATOR_ACTION, SMALL_ACTION, WHISPER = 1, 2, 3, 4
_LIST_ONLY_TOPIC_FIELDS = frozenset(
    {"bumped", "bumped_at", "unseen", "liked", "posters", "last_poster_username"}
    | {"has_accepted_answer"}
)
"""Fields of a ``/latest.json`` topic that ``/t/{id}.json`` does not have (as recorded)."""


def iso(epoch: float) -> str:
    """Discourse's timestamp form: ISO-8601 UTC with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "topic"


@dataclass
class FakeCategory:
    id: int
    name: str
    slug: str
    parent_id: int | None = None


@dataclass
class FakePost:
    id: int
    topic_id: int
    post_number: int
    username: str | None
    """``None`` once the author's account is gone."""
    created_at: float
    raw: str
    post_type: int = REGULAR
    reply_to_post_number: int | None = None
    updated_at: float | None = None
    version: int = 1
    deleted_at: float | None = None
    user_deleted: bool = False
    hidden: bool = False


@dataclass
class FakeTopic:
    id: int
    title: str
    slug: str
    category_id: int
    created_at: float
    posts: list[FakePost] = field(default_factory=list)


class FakeDiscourse:
    """One forum's content, served under ``prefix``; all methods are thread-safe."""

    def __init__(self, *, prefix: str = "", api_key: str | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self.api_key = api_key
        self.categories: dict[int, FakeCategory] = {
            1: FakeCategory(1, "Uncategorized", "uncategorized")
        }
        self.topics: dict[int, FakeTopic] = {}
        self.posts: dict[int, FakePost] = {}
        self.raw_posts: list[tuple[float, str]] = []
        self._user_ids: dict[str, int] = {}
        self._lock = threading.RLock()

    # -- content ---------------------------------------------------------

    def add_category(
        self, *, name: str, slug: str | None = None, parent_id: int | None = None
    ) -> FakeCategory:
        with self._lock:
            category = FakeCategory(
                max(self.categories) + 1, name, slug or slugify(name), parent_id
            )
            self.categories[category.id] = category
            return category

    def add_thread(
        self,
        *,
        title: str,
        author: str | None,
        created_at: float,
        text: str = "",
        category_id: int = 1,
    ) -> FakePost:
        """Open a topic; its first post (``post_number`` 1) is returned."""
        with self._lock:
            topic_id = max(self.topics, default=0) + 1
            topic = FakeTopic(topic_id, title, slugify(title), category_id, created_at)
            self.topics[topic_id] = topic
            return self._append(topic, author, created_at, text or title, REGULAR, None)

    def add_reply(
        self,
        *,
        topic_id: int,
        author: str | None,
        created_at: float,
        text: str = "",
        reply_to_post_number: int | None = None,
        post_type: int = REGULAR,
    ) -> FakePost:
        with self._lock:
            topic = self.topics[topic_id]
            return self._append(topic, author, created_at, text, post_type, reply_to_post_number)

    def _append(
        self,
        topic: FakeTopic,
        author: str | None,
        created_at: float,
        text: str,
        post_type: int,
        reply_to: int | None,
    ) -> FakePost:
        post = FakePost(
            id=max(self.posts, default=0) + 1,
            topic_id=topic.id,
            post_number=len(topic.posts) + 1,
            username=author,
            created_at=created_at,
            raw=text,
            post_type=post_type,
            reply_to_post_number=reply_to,
        )
        topic.posts.append(post)
        self.posts[post.id] = post
        return post

    def add_raw_post(self, text: str, *, listed_as: float) -> None:
        """Hand-made: one ``/posts.json`` entry given as raw JSON text, listed as if its id
        were ``listed_as``. For what no real forum sends: ids such as ``1e400`` or ``NaN``
        (which ``json.dumps`` cannot write), or an id far above the fake's own ids (which
        would move the ids of every post added after it)."""
        with self._lock:
            self.raw_posts.append((listed_as, text))

    def edit(self, post_id: int, *, text: str, at: float) -> None:
        with self._lock:
            post = self.posts[post_id]
            post.raw, post.updated_at, post.version = text, at, post.version + 1

    def delete(self, post_id: int, *, at: float) -> None:
        """Staff deletion: the post leaves every listing an anonymous visitor sees."""
        with self._lock:
            self.posts[post_id].deleted_at = at

    def withdraw(self, post_id: int) -> None:
        """The author deleted it: still listed, marked ``user_deleted``."""
        with self._lock:
            self.posts[post_id].user_deleted = True

    def hide(self, post_id: int) -> None:
        """Hidden by flags: gone from ``/posts.json``, still in its topic."""
        with self._lock:
            self.posts[post_id].hidden = True

    # -- HTTP ------------------------------------------------------------

    def register(self, router: Router) -> None:
        topic_path = re.compile(re.escape(self.prefix) + r"/t/(?:[^/]+/)?(\d+)\.json")
        router.add(self.prefix + "/posts.json", self._guarded(self._posts_json))
        router.add(self.prefix + "/latest.json", self._guarded(self._latest_json))
        router.add(self.prefix + "/categories.json", self._guarded(self._categories_json))
        router.add(
            lambda path: topic_path.fullmatch(path) is not None,
            self._guarded(lambda request: self._topic_json(request, topic_path)),
        )

    def _guarded(self, handler: Callable[[Request], Any]) -> Callable[[Request], FakeResponse]:
        def serve(request: Request) -> FakeResponse:
            if self.api_key is not None and request.headers.get("api-key") != self.api_key:
                return FakeResponse.json(
                    {
                        "errors": ["You are not permitted to view the requested resource."],
                        "error_type": "invalid_access",
                    },
                    status=403,
                )
            with self._lock:
                payload = handler(request)
            if isinstance(payload, FakeResponse):
                return payload
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return _with_etag(request, body)

        return serve

    def _posts_json(self, request: Request) -> bytes:
        before = _int_param(request, "before", 0)
        listed: list[tuple[float, FakePost | str]] = [
            (post.id, post)
            for post in self.posts.values()
            if post.post_type == REGULAR
            and post.deleted_at is None
            and not post.hidden
            and (before <= 0 or post.id < before)
        ]
        listed += [(key, text) for key, text in self.raw_posts if before <= 0 or key < before]
        listed.sort(key=lambda entry: entry[0], reverse=True)
        shown = [
            entry if isinstance(entry, str) else json.dumps(self._post(entry, listing=True))
            for _, entry in listed[:POSTS_PAGE_SIZE]
        ]
        # written as text, so that a hand-made entry reaches the wire byte for byte
        return ('{"latest_posts": [' + ", ".join(shown) + "]}").encode()

    def _latest_json(self, request: Request) -> dict[str, Any]:
        page = max(0, _int_param(request, "page", 0))
        topics = sorted(
            (t for t in self.topics.values() if _visible(t.posts)),
            key=lambda t: (_bumped_at(t), t.id),
            reverse=True,
        )
        shown = topics[page * TOPICS_PER_PAGE : (page + 1) * TOPICS_PER_PAGE]
        topic_list: dict[str, Any] = {"can_create_topic": False, "per_page": TOPICS_PER_PAGE}
        if (page + 1) * TOPICS_PER_PAGE < len(topics):
            topic_list["more_topics_url"] = (
                f"{self.prefix}/latest?no_definitions=true&page={page + 1}"
            )
        topic_list["top_tags"] = []
        topic_list["topics"] = [self._topic_summary(t) for t in shown]
        names = {p.username for t in shown for p in _visible(t.posts)}
        users = [self._user(name) for name in sorted(n for n in names if n is not None)]
        return {"users": users, "primary_groups": [], "flair_groups": [], "topic_list": topic_list}

    def _topic_json(self, request: Request, pattern: re.Pattern[str]) -> Any:
        match = pattern.fullmatch(request.path)
        topic = self.topics.get(int(match.group(1))) if match else None
        page = max(1, _int_param(request, "page", 1))
        if topic is None or not (posts := _visible(topic.posts)):
            return FakeResponse.json({"errors": ["not found"], "error_type": "not_found"}, 404)
        chunk = posts[(page - 1) * CHUNK_SIZE : page * CHUNK_SIZE]
        if not chunk:
            return FakeResponse.json({"errors": ["not found"], "error_type": "not_found"}, 404)
        body: dict[str, Any] = {
            "post_stream": {
                "posts": [self._post(p, listing=False) for p in chunk],
                "stream": [p.id for p in posts],
            },
            "timeline_lookup": [[1, 0]],
            "tags": [],
            "tags_descriptions": {},
        }
        summary = self._topic_summary(topic)
        body.update((k, v) for k, v in summary.items() if k not in _LIST_ONLY_TOPIC_FIELDS)
        body.update(
            chunk_size=CHUNK_SIZE,
            current_post_number=1,
            deleted_at=None,
            draft_key=f"topic_{topic.id}",
            user_id=self._user_id(posts[0].username),
            participant_count=len({p.username for p in posts}),
            details={"can_edit": False, "notification_level": 1},
        )
        return body

    def _categories_json(self, request: Request) -> dict[str, Any]:
        with_subs = query_value(request.query, "include_subcategories") == "true"
        listed = []
        for category in self.categories.values():
            if category.parent_id is not None:
                continue
            entry = self._category(category)
            if with_subs:
                entry["subcategory_list"] = [
                    self._category(c)
                    for c in self.categories.values()
                    if c.parent_id == category.id
                ]
            listed.append(entry)
        return {
            "category_list": {
                "can_create_category": False,
                "can_create_topic": False,
                "categories": listed,
            }
        }

    # -- rendering -------------------------------------------------------

    def _user_id(self, username: str | None) -> int | None:
        if username is None:
            return None
        return self._user_ids.setdefault(username, len(self._user_ids) + 2)

    def _user(self, username: str) -> dict[str, Any]:
        letter = username[:1].lower()
        return {
            "id": self._user_id(username),
            "username": username,
            "name": "",
            "avatar_template": f"/letter_avatar_proxy/v4/letter/{letter}/1/{{size}}.png",
            "trust_level": 1,
        }

    def _post(self, post: FakePost, *, listing: bool) -> dict[str, Any]:
        """A post as ``/posts.json`` (``listing``) or ``/t/{id}.json`` renders it."""
        topic = self.topics[post.topic_id]
        cooked = f"<p>{html.escape(post.raw)}</p>"
        rendered: dict[str, Any] = {
            "id": post.id,
            "name": "",
            "username": post.username,
            "avatar_template": self._user(post.username)["avatar_template"]
            if post.username
            else None,
            "created_at": iso(post.created_at),
            "cooked": cooked,
            "post_number": post.post_number,
            "post_type": post.post_type,
            "updated_at": iso(post.updated_at or post.created_at),
            "reply_count": sum(
                1 for p in topic.posts if p.reply_to_post_number == post.post_number
            ),
            "reply_to_post_number": post.reply_to_post_number,
            "quote_count": 0,
            "incoming_link_count": 0,
            "reads": 1,
            "readers_count": 0,
            "score": 0,
            "yours": False,
            "topic_id": topic.id,
            "topic_slug": topic.slug,
        }
        if listing:
            rendered.update(
                topic_title=topic.title,
                topic_html_title=html.escape(topic.title),
                category_id=topic.category_id,
            )
        rendered.update(
            display_username="",
            primary_group_name=None,
            flair_name=None,
            flair_url=None,
            flair_bg_color=None,
            flair_color=None,
            version=post.version,
            can_edit=False,
            can_delete=False,
            can_recover=False,
            can_wiki=False,
            user_title=None,
            bookmarked=False,
            actions_summary=[],
            moderator=False,
            admin=False,
            staff=False,
            user_id=self._user_id(post.username),
            hidden=post.hidden,
            trust_level=1,
            deleted_at=iso(post.deleted_at) if post.deleted_at is not None else None,
            user_deleted=post.user_deleted,
            edit_reason=None,
            can_view_edit_history=True,
            wiki=False,
        )
        if listing:
            rendered.update(raw=post.raw, excerpt=html.escape(post.raw[:200]))
        else:
            rendered["read"] = True
        return rendered

    def _topic_summary(self, topic: FakeTopic) -> dict[str, Any]:
        """The fields a topic has in ``/latest.json`` (and at the top of ``/t/{id}.json``)."""
        posts = _visible(topic.posts)
        last = posts[-1] if posts else None
        posters: list[dict[str, Any]] = []
        for name in dict.fromkeys(p.username for p in posts):
            posters.append(
                {
                    "extras": None,
                    "description": "Original Poster" if not posters else "Frequent Poster",
                    "user_id": self._user_id(name),
                    "primary_group_id": None,
                    "flair_group_id": None,
                }
            )
        return {
            "id": topic.id,
            "title": topic.title,
            "fancy_title": html.escape(topic.title),
            "slug": topic.slug,
            "posts_count": len(posts),
            "reply_count": max(0, len(posts) - 1),
            "highest_post_number": max((p.post_number for p in topic.posts), default=0),
            "image_url": None,
            "created_at": iso(topic.created_at),
            "last_posted_at": iso(last.created_at) if last else None,
            "bumped": True,
            "bumped_at": iso(_bumped_at(topic)),
            "archetype": "regular",
            "unseen": False,
            "pinned": False,
            "unpinned": None,
            "visible": True,
            "closed": False,
            "archived": False,
            "bookmarked": None,
            "liked": None,
            "tags": [],
            "tags_descriptions": {},
            "views": 0,
            "like_count": 0,
            "has_summary": False,
            "last_poster_username": last.username if last else None,
            "category_id": topic.category_id,
            "pinned_globally": False,
            "featured_link": None,
            "has_accepted_answer": False,
            "posters": posters,
        }

    def _category(self, category: FakeCategory) -> dict[str, Any]:
        children = [c.id for c in self.categories.values() if c.parent_id == category.id]
        topics = [t for t in self.topics.values() if t.category_id == category.id]
        entry: dict[str, Any] = {
            "id": category.id,
            "name": category.name,
            "color": "0088CC",
            "text_color": "FFFFFF",
            "slug": category.slug,
            "topic_count": len(topics),
            "post_count": sum(len(_visible(t.posts)) for t in topics),
            "position": category.id,
            "description": None,
            "topic_url": None,
            "read_restricted": False,
            "permission": None,
            "notification_level": 1,
            "has_children": bool(children),
            "subcategory_ids": children,
        }
        if category.parent_id is not None:
            entry["parent_category_id"] = category.parent_id
        return entry


def _visible(posts: list[FakePost]) -> list[FakePost]:
    """Posts an anonymous visitor sees in a topic (staff-deleted ones are gone)."""
    return [p for p in posts if p.deleted_at is None]


def _bumped_at(topic: FakeTopic) -> float:
    regular = [p.created_at for p in _visible(topic.posts) if p.post_type == REGULAR]
    return max(regular, default=topic.created_at)


def _int_param(request: Request, name: str, default: int) -> int:
    value = query_value(request.query, name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _with_etag(request: Request, body: bytes) -> FakeResponse:
    etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
    if request.headers.get("if-none-match") == etag:
        return FakeResponse(304, b"", {"ETag": etag})
    return FakeResponse(
        200, body, {"Content-Type": "application/json; charset=utf-8", "ETag": etag}
    )
