"""A fake Lemmy instance: communities, posts and comments behind ``/api/v3``.

It answers as Lemmy's own code does (read in LemmyNet/lemmy: ``post_view.rs`` and
``comment_view.rs`` of release/v0.19, ``routes_v3`` of 1.0), in the shape of the
recorded bodies in ``shared/real-samples/lemmy`` (one 0.19 post page, five
0.19 comment views), to an anonymous client:

- ``/api/v3/post/list?community_name=&sort=New&limit=&page=&page_cursor=&show_nsfw=``:
  the community's posts, featured (pinned) ones first, then newest first by
  ``published`` and id. Deleted and removed posts are left out, NSFW ones too
  unless ``show_nsfw=true``. ``limit`` defaults to 10; more than 50 is refused.
- ``/api/v3/comment/list?community_name=&sort=New&limit=&page=``: every
  comment on the community's posts, newest first; deleted and removed ones stay
  listed with their ``content`` blanked.
- ``community_name`` is ``name`` (a community of this instance) or
  ``name@host``; an unknown one is refused with 400 ``couldnt_find_community``.

Versions differ in paging, which is what ``version`` chooses:

- ``"0.19"``: ``page`` (offset ``limit * (page - 1)``) on both lists; posts
  also page by keyset, ``next_page`` on every non-empty post page (``P`` and the
  last post's id in hex) and ``page_cursor`` to go on after it. Comments have
  no cursor.
- ``"0.18"``: ``page`` only, no ``next_page``; timestamps without ``Z``. An
  unknown ``community_name`` is ignored and both lists list every community's
  items (0.17 and 0.18.0 did ``.ok()`` on the lookup; 0.18.1 refuses it).
- ``"1.0"``: the v3 compatibility layer: posts page by ``page`` (at most page
  10) and ``next_page`` is null; the comment list ignores ``page`` and always
  answers the first ``limit`` comments.

``after_request`` (a test's hook) runs after each list is answered, so a test
can change the instance between two pages of one walk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from monitor.fakeforum.server import FakeResponse, Request, Router, query_value

Version = Literal["0.18", "0.19", "1.0"]
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
MAX_PAGE_V1 = 10
API = "/api/v3"


@dataclass
class FakeCommunity:
    id: int
    name: str
    host: str
    local: bool
    title: str = ""


@dataclass
class FakePerson:
    id: int
    name: str
    host: str
    local: bool

    @property
    def actor_id(self) -> str:
        return f"https://{self.host}/u/{self.name}"


@dataclass
class FakeLemmyPost:
    id: int
    community: FakeCommunity
    creator: FakePerson
    published: float
    title: str
    body: str | None = None
    ap_id: str = ""
    deleted: bool = False
    removed: bool = False
    nsfw: bool = False
    featured: bool = False
    updated: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Raw fields of ``post`` that replace the rendered ones (hostile-data tests)."""


@dataclass
class FakeLemmyComment:
    id: int
    post: FakeLemmyPost
    creator: FakePerson
    published: float
    content: str
    path: str
    ap_id: str = ""
    deleted: bool = False
    removed: bool = False
    updated: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Raw fields of ``comment`` that replace the rendered ones (hostile-data tests)."""


class FakeLemmy:
    """One Lemmy instance's content, served under ``prefix``; methods are thread-safe."""

    def __init__(
        self, *, prefix: str = "", domain: str = "fake.lemmy", version: Version = "0.19"
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.domain = domain
        self.version: Version = version
        self.communities: dict[int, FakeCommunity] = {}
        self.people: dict[tuple[str, str], FakePerson] = {}
        self.posts: dict[int, FakeLemmyPost] = {}
        self.comments: dict[int, FakeLemmyComment] = {}
        self.after_request: Callable[[Request], None] | None = None
        self._next_post = 52_000_000
        self._next_comment = 24_000_000
        self._lock = threading.RLock()

    # -- content ---------------------------------------------------------------

    def add_community(self, name: str, *, host: str | None = None) -> FakeCommunity:
        """A community; ``host`` other than the instance's own makes it a federated one."""
        with self._lock:
            where = host or self.domain
            community = FakeCommunity(
                len(self.communities) + 1, name, where, where == self.domain, name.title()
            )
            self.communities[community.id] = community
            return community

    def person(self, name: str, host: str | None = None) -> FakePerson:
        """The person ``name`` of ``host`` (this instance by default), made on first use."""
        with self._lock:
            where = host or self.domain
            key = (name, where)
            if key not in self.people:
                self.people[key] = FakePerson(
                    len(self.people) + 1, name, where, where == self.domain
                )
            return self.people[key]

    def add_post(
        self,
        community: FakeCommunity,
        *,
        published: float,
        author: str = "member",
        host: str | None = None,
        title: str = "A post",
        body: str | None = "Hello",
        ap_id: str | None = None,
        nsfw: bool = False,
        featured: bool = False,
    ) -> FakeLemmyPost:
        """A post by ``author@host``; ids are handed out in the order posts are added."""
        with self._lock:
            self._next_post += 1
            creator = self.person(author, host)
            post = FakeLemmyPost(
                self._next_post,
                community,
                creator,
                float(published),
                title,
                body,
                ap_id or f"https://{creator.host}/post/{self._next_post}",
                nsfw=nsfw,
                featured=featured,
            )
            self.posts[post.id] = post
            return post

    def add_comment(
        self,
        post: FakeLemmyPost,
        *,
        published: float,
        author: str = "member",
        host: str | None = None,
        parent: FakeLemmyComment | None = None,
        content: str = "A comment",
        ap_id: str | None = None,
    ) -> FakeLemmyComment:
        """A comment on ``post``, answering ``parent`` (the post itself when None)."""
        with self._lock:
            self._next_comment += 1
            number = self._next_comment
            path = f"{parent.path if parent else '0'}.{number}"
            creator = self.person(author, host)
            comment = FakeLemmyComment(
                number,
                post,
                creator,
                float(published),
                content,
                path,
                ap_id or f"https://{creator.host}/comment/{number}",
            )
            self.comments[number] = comment
            return comment

    def delete(self, item: FakeLemmyPost | FakeLemmyComment, *, removed: bool = False) -> None:
        """Its author deleted it (a moderator removed it, with ``removed``)."""
        with self._lock:
            if removed:
                item.removed = True
            else:
                item.deleted = True

    def purge(self, comment: FakeLemmyComment) -> None:
        """An admin purged the comment: it is gone from every list."""
        with self._lock:
            del self.comments[comment.id]

    # -- rendering -------------------------------------------------------------

    def _time(self, epoch: float) -> str:
        moment = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return moment if self.version == "0.18" else moment + "Z"

    def _person(self, person: FakePerson) -> dict[str, Any]:
        return {
            "id": person.id,
            "name": person.name,
            "banned": False,
            "published": self._time(1_700_000_000),
            "actor_id": person.actor_id,
            "local": person.local,
            "deleted": False,
            "bot_account": False,
            "instance_id": 1 if person.local else 2,
        }

    def _community(self, community: FakeCommunity) -> dict[str, Any]:
        return {
            "id": community.id,
            "name": community.name,
            "title": community.title,
            "removed": False,
            "published": self._time(1_690_000_000),
            "deleted": False,
            "nsfw": False,
            "actor_id": f"https://{community.host}/c/{community.name}",
            "local": community.local,
            "hidden": False,
            "posting_restricted_to_mods": False,
            "instance_id": 1 if community.local else 2,
            "visibility": "Public",
        }

    def _post(self, post: FakeLemmyPost) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "id": post.id,
            "name": post.title,
            "creator_id": post.creator.id,
            "community_id": post.community.id,
            "removed": post.removed,
            "locked": False,
            "published": self._time(post.published),
            "deleted": post.deleted,
            "nsfw": post.nsfw,
            "ap_id": post.ap_id,
            "local": post.creator.local,
            "language_id": 37,
            "featured_community": post.featured,
            "featured_local": False,
        }
        if post.body is not None:
            rendered["body"] = post.body
        if post.updated is not None:
            rendered["updated"] = self._time(post.updated)
        return {**rendered, **post.extra}

    def render_post(self, post: FakeLemmyPost) -> dict[str, Any]:
        """A PostView as the recorded post page has them (a subset of its fields)."""
        replies = sum(1 for c in self.comments.values() if c.post.id == post.id)
        return {
            "post": self._post(post),
            "creator": self._person(post.creator),
            "community": self._community(post.community),
            "creator_banned_from_community": False,
            "banned_from_community": False,
            "creator_is_moderator": False,
            "creator_is_admin": False,
            "counts": {
                "post_id": post.id,
                "comments": replies,
                "score": 1,
                "upvotes": 1,
                "downvotes": 0,
                "published": self._time(post.published),
            },
            "subscribed": "NotSubscribed",
            "saved": False,
            "read": False,
            "hidden": False,
            "creator_blocked": False,
            "unread_comments": replies,
        }

    def render_comment(self, comment: FakeLemmyComment) -> dict[str, Any]:
        """A CommentView as the recorded ones; a deleted or removed comment's content is
        blanked, as Lemmy does for anyone but an admin."""
        gone = comment.deleted or comment.removed
        rendered: dict[str, Any] = {
            "id": comment.id,
            "creator_id": comment.creator.id,
            "post_id": comment.post.id,
            "content": "" if gone else comment.content,
            "removed": comment.removed,
            "published": self._time(comment.published),
            "deleted": comment.deleted,
            "ap_id": comment.ap_id,
            "local": comment.creator.local,
            "path": comment.path,
            "distinguished": False,
            "language_id": 37,
        }
        if comment.updated is not None:
            rendered["updated"] = self._time(comment.updated)
        children = sum(1 for c in self.comments.values() if c.path.startswith(comment.path + "."))
        return {
            "comment": {**rendered, **comment.extra},
            "creator": self._person(comment.creator),
            "post": self._post(comment.post),
            "community": self._community(comment.post.community),
            "counts": {
                "comment_id": comment.id,
                "score": 1,
                "upvotes": 1,
                "downvotes": 0,
                "published": self._time(comment.published),
                "child_count": children,
            },
            "creator_banned_from_community": False,
            "banned_from_community": False,
            "creator_is_moderator": False,
            "creator_is_admin": False,
            "subscribed": "NotSubscribed",
            "saved": False,
            "creator_blocked": False,
        }

    # -- HTTP ------------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.add(self.prefix + API + "/post/list", self._answered(self._post_list))
        router.add(self.prefix + API + "/comment/list", self._answered(self._comment_list))

    def _answered(
        self, handler: Callable[[Request], FakeResponse]
    ) -> Callable[[Request], FakeResponse]:
        def answer(request: Request) -> FakeResponse:
            response = handler(request)
            if self.after_request is not None:
                self.after_request(request)
            return response

        return answer

    def _find_community(self, wanted: str | None) -> FakeCommunity | None:
        if not wanted:
            return None
        name, _, host = wanted.partition("@")
        for community in self.communities.values():
            if community.name.lower() == name.lower() and community.host == (host or self.domain):
                return community
        return None

    def _paging(self, request: Request) -> tuple[int, int] | FakeResponse:
        """(limit, page), or Lemmy's refusal of them."""
        try:
            limit = int(query_value(request.query, "limit") or DEFAULT_LIMIT)
            page = int(query_value(request.query, "page") or 1)
        except ValueError:
            return FakeResponse.json({"error": "couldnt_get_posts"}, status=400)
        if not 1 <= limit <= MAX_LIMIT or page < 1:
            return FakeResponse.json({"error": "couldnt_get_posts"}, status=400)
        return limit, page

    def _post_list(self, request: Request) -> FakeResponse:
        paging = self._paging(request)
        if isinstance(paging, FakeResponse):
            return paging
        limit, page = paging
        with self._lock:
            community = self._find_community(query_value(request.query, "community_name"))
            if community is None and self.version != "0.18":
                return FakeResponse.json({"error": "couldnt_find_community"}, status=400)
            show_nsfw = query_value(request.query, "show_nsfw") == "true"
            listed = sorted(
                (
                    p
                    for p in self.posts.values()
                    if community in (None, p.community)
                    and not (p.deleted or p.removed)
                    and (show_nsfw or not p.nsfw)
                ),
                key=lambda p: (p.featured, p.published, p.id),
                reverse=True,
            )
            token = query_value(request.query, "page_cursor")
            if token is not None and self.version == "0.19":
                after = int(token.removeprefix("P"), 16)
                keys = [(p.featured, p.published, p.id) for p in listed]
                anchor = self.posts[after]
                mark = (anchor.featured, anchor.published, anchor.id)
                listed = [p for p, key in zip(listed, keys, strict=True) if key < mark]
                page = 1
            if self.version == "1.0":
                page = min(page, MAX_PAGE_V1)
            chosen = listed[(page - 1) * limit : page * limit]
            body: dict[str, Any] = {"posts": [self.render_post(p) for p in chosen]}
        if self.version == "0.19":
            body["next_page"] = f"P{chosen[-1].id:x}" if chosen else None
        elif self.version == "1.0":
            body["next_page"] = None
        return FakeResponse.json(body)

    def _comment_list(self, request: Request) -> FakeResponse:
        paging = self._paging(request)
        if isinstance(paging, FakeResponse):
            return paging
        limit, page = paging
        with self._lock:
            community = self._find_community(query_value(request.query, "community_name"))
            if community is None and self.version != "0.18":
                return FakeResponse.json({"error": "couldnt_find_community"}, status=400)
            listed = sorted(
                (c for c in self.comments.values() if community in (None, c.post.community)),
                key=lambda c: (c.published, c.id),
                reverse=True,
            )
            if self.version == "1.0":
                page = 1
            chosen = listed[(page - 1) * limit : page * limit]
            body = {"comments": [self.render_comment(c) for c in chosen]}
        return FakeResponse.json(body)
