"""A fake GitHub GraphQL API: repositories' discussions, for tests on 127.0.0.1.

``POST {prefix}/graphql`` executes the query it is sent (with graphql-core, a test
dependency) against ``SCHEMA``: the part of GitHub's schema the adapter asks about,
its types and arguments as GitHub's GraphQL reference gives them. So a query naming a
field or argument GitHub does not have fails here as it would there (an ``errors`` array,
HTTP 200), and the fake answers exactly what a query asks for. What it serves follows the
recorded responses (``shared/real-samples/github-discussions``): discussions ordered by
their latest activity (``UPDATED_AT``, GitHub's default order) or creation, comments and
replies oldest first, ``last``/``before`` and ``first``/``after`` paging with cursors that
encode the sort key (``cursor:v2:`` base64, as GitHub's do), ``author: null`` for a
deleted account, ``NOT_FOUND`` errors for an unknown repository or node.

Every query costs what GitHub's published formula says (``query_cost``) and is taken
from a budget of ``limit`` points; ``rateLimit`` and the ``X-RateLimit-*`` headers report
it. A request without the bearer token answers 401 as GitHub does. ``fail_next`` queues
an ``errors`` answer (``RATE_LIMITED``, say) for the next query.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.fakeforum.server import FakeResponse, Request, Router

SCHEMA_SDL = """
scalar DateTime
scalar URI

interface Node { id: ID! }

interface Actor {
  avatarUrl(size: Int): URI!
  login: String!
  resourcePath: URI!
  url: URI!
}

type User implements Actor & Node {
  avatarUrl(size: Int): URI!
  id: ID!
  login: String!
  resourcePath: URI!
  url: URI!
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

type RateLimit {
  cost: Int!
  limit: Int!
  nodeCount: Int!
  remaining: Int!
  resetAt: DateTime!
  used: Int!
}

enum OrderDirection { ASC DESC }
enum DiscussionOrderField { CREATED_AT UPDATED_AT }
input DiscussionOrder { field: DiscussionOrderField! direction: OrderDirection! }
enum DiscussionState { CLOSED OPEN }

type Repository implements Node {
  id: ID!
  name: String!
  nameWithOwner: String!
  hasDiscussionsEnabled: Boolean!
  discussion(number: Int!): Discussion
  discussionCategories(
    after: String, before: String, filterByAssignable: Boolean = false, first: Int, last: Int
  ): DiscussionCategoryConnection!
  discussions(
    after: String, answered: Boolean = null, before: String, categoryId: ID = null,
    first: Int, last: Int, orderBy: DiscussionOrder = {field: UPDATED_AT, direction: DESC},
    states: [DiscussionState!] = []
  ): DiscussionConnection!
}

type DiscussionCategory implements Node {
  createdAt: DateTime!
  description: String
  emoji: String!
  id: ID!
  isAnswerable: Boolean!
  name: String!
  slug: String!
  updatedAt: DateTime!
}

type DiscussionCategoryConnection {
  edges: [DiscussionCategoryEdge]
  nodes: [DiscussionCategory]
  pageInfo: PageInfo!
  totalCount: Int!
}
type DiscussionCategoryEdge { cursor: String! node: DiscussionCategory }

type Discussion implements Node {
  answer: DiscussionComment
  author: Actor
  body: String!
  bodyHTML: String!
  bodyText: String!
  category: DiscussionCategory!
  comments(after: String, before: String, first: Int, last: Int): DiscussionCommentConnection!
  createdAt: DateTime!
  databaseId: Int
  id: ID!
  lastEditedAt: DateTime
  locked: Boolean!
  number: Int!
  title: String!
  updatedAt: DateTime!
  url: URI!
}

type DiscussionConnection {
  edges: [DiscussionEdge]
  nodes: [Discussion]
  pageInfo: PageInfo!
  totalCount: Int!
}
type DiscussionEdge { cursor: String! node: Discussion }

type DiscussionComment implements Node {
  author: Actor
  body: String!
  bodyHTML: String!
  bodyText: String!
  createdAt: DateTime!
  databaseId: Int
  deletedAt: DateTime
  discussion: Discussion
  id: ID!
  isAnswer: Boolean!
  isMinimized: Boolean!
  lastEditedAt: DateTime
  replies(after: String, before: String, first: Int, last: Int): DiscussionCommentConnection!
  replyTo: DiscussionComment
  updatedAt: DateTime!
  url: URI!
}

type DiscussionCommentConnection {
  edges: [DiscussionCommentEdge]
  nodes: [DiscussionComment]
  pageInfo: PageInfo!
  totalCount: Int!
}
type DiscussionCommentEdge { cursor: String! node: DiscussionComment }

type Query {
  node(id: ID!): Node
  rateLimit(dryRun: Boolean = false): RateLimit
  repository(followRenames: Boolean = true, name: String!, owner: String!): Repository
}
"""
GRAPHQL_PATH = "/graphql"
WEB = "https://github.com"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def query_cost(query: str, variables: Mapping[str, Any]) -> int:
    """The points GitHub charges for ``query``: every connection (a field with ``first`` or
    ``last``) needs one request per parent it is nested under (the product of the enclosing
    connections' page sizes); their sum, divided by 100 and rounded, at least 1.
    ``rateLimit`` itself is free."""
    from graphql import (
        FieldNode,
        FragmentDefinitionNode,
        FragmentSpreadNode,
        InlineFragmentNode,
        IntValueNode,
        OperationDefinitionNode,
        SelectionSetNode,
        VariableNode,
        parse,
    )

    document = parse(query)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    total = 0

    def size(node: FieldNode) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value not in ("first", "last"):
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                given = variables.get(value.name.value)
                return given if isinstance(given, int) else None
        return None

    def walk(selections: SelectionSetNode | None, parents: int) -> None:
        nonlocal total
        for selection in selections.selections if selections else ():
            if isinstance(selection, FieldNode):
                page = size(selection)
                if page is None:
                    walk(selection.selection_set, parents)
                else:
                    total += parents
                    walk(selection.selection_set, parents * page)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set, parents)
            elif isinstance(selection, FragmentSpreadNode):
                walk(fragments[selection.name.value].selection_set, parents)

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walk(definition.selection_set, 1)
    return max(1, math.floor(total / 100 + 0.5))


@dataclass
class FakePost:
    """A discussion, a comment or a reply."""

    id: str
    db_id: int
    kind: str
    created: float
    author: str | None
    body: str
    discussion: str
    parent: str | None = None
    title: str = ""
    number: int = 0
    category: str | None = None
    repository: str = ""
    """owner/name, lower-case (discussions only)."""
    bumped: float = 0.0
    """A discussion's latest activity: what ``UPDATED_AT`` orders by and ``updatedAt`` says."""
    deleted_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Raw fields that replace the rendered ones (for hostile-data tests)."""


@dataclass
class FakeRepository:
    owner: str
    name: str
    id: str
    discussions_enabled: bool = True
    categories: dict[str, tuple[str, str]] = field(default_factory=dict)
    """id -> (name, slug)"""


def _cursor(key: float, db_id: int) -> str:
    raw = f"cursor:v2:{json.dumps([key, db_id])}".encode()
    return base64.b64encode(raw).decode()


def _position(cursor: str | None) -> tuple[float, int] | None:
    if cursor is None:
        return None
    try:
        raw = base64.b64decode(cursor).decode()
        key, db_id = json.loads(raw.removeprefix("cursor:v2:"))
        return float(key), int(db_id)
    except (ValueError, TypeError):
        return None


Resolver = Callable[..., Any]


class FakeGitHub:
    """In-memory repositories served as GitHub's GraphQL API; see the module doc."""

    def __init__(self, *, prefix: str = "", token: str = "fake-github-token") -> None:
        self.prefix = prefix
        self.token = token
        self.repositories: dict[str, FakeRepository] = {}
        self.posts: dict[str, FakePost] = {}
        self.limit = 5000
        self.used = 0
        self.reset_at = 4_102_444_800.0  # 2100: the budget never resets during a test
        self.queries: list[tuple[str, dict[str, Any], int]] = []
        """(operation name, variables, cost) of every query answered."""
        self.failures: list[tuple[dict[str, Any], dict[str, str]]] = []
        self._serial = 0
        self._lock = threading.Lock()
        self._schema: Any = None

    # ------------------------------------------------------------ content

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def add_repository(
        self,
        repository: str,
        *,
        categories: tuple[str, ...] = ("General", "Q&A"),
        enabled: bool = True,
    ) -> FakeRepository:
        owner, _, name = repository.partition("/")
        with self._lock:
            serial = self._next()
            repo = FakeRepository(owner, name, f"R_{serial}", enabled)
            for label in categories:
                slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
                repo.categories[f"DIC_{self._next()}"] = (label, slug)
            self.repositories[repository.lower()] = repo
        return repo

    def category_id(self, repository: str, name: str) -> str:
        repo = self.repositories[repository.lower()]
        return next(i for i, (label, _) in repo.categories.items() if label == name)

    def add_discussion(
        self,
        repository: str,
        *,
        created: float,
        author: str | None = "member",
        title: str = "A question",
        body: str = "How do I do this?",
        category: str | None = None,
    ) -> str:
        repo = self.repositories[repository.lower()]
        with self._lock:
            serial = self._next()
            number = sum(1 for p in self.posts.values() if p.kind == "discussion") + 1
            ident = f"D_{serial}"
            chosen = category or next(iter(repo.categories), None)
            if chosen is not None and chosen not in repo.categories:
                chosen = next(i for i, (label, _) in repo.categories.items() if label == category)
            self.posts[ident] = FakePost(
                ident,
                serial,
                "discussion",
                created,
                author,
                body,
                discussion=ident,
                title=title,
                number=number,
                category=chosen,
                repository=repository.lower(),
                bumped=created,
            )
        return ident

    def add_comment(
        self, discussion: str, *, created: float, author: str | None = "member", body: str = "Ok"
    ) -> str:
        return self._add("comment", discussion, None, created, author, body)

    def add_reply(
        self, comment: str, *, created: float, author: str | None = "member", body: str = "Yes"
    ) -> str:
        parent = self.posts[comment]
        return self._add("reply", parent.discussion, comment, created, author, body)

    def _add(
        self,
        kind: str,
        discussion: str,
        parent: str | None,
        created: float,
        author: str | None,
        body: str,
    ) -> str:
        with self._lock:
            serial = self._next()
            ident = f"DC_{serial}"
            self.posts[ident] = FakePost(
                ident, serial, kind, created, author, body, discussion=discussion, parent=parent
            )
            thread = self.posts[discussion]
            thread.bumped = max(thread.bumped, created)
        return ident

    def delete(self, ident: str) -> None:
        """Delete a post: a discussion with all of it; a comment with replies stays as a
        deleted comment (``deletedAt``), as GitHub keeps it."""
        with self._lock:
            post = self.posts[ident]
            if post.kind == "discussion":
                for key in [k for k, p in self.posts.items() if p.discussion == ident]:
                    del self.posts[key]
            elif post.kind == "comment" and self._children(ident):
                post.deleted_at = post.created + 1
            else:
                del self.posts[ident]

    def fail_next(self, errors: list[dict[str, Any]], **headers: str) -> None:
        """Answer the next query with ``{"errors": errors}`` (HTTP 200) and ``headers`` alone."""
        with self._lock:
            self.failures.append(({"errors": errors}, headers))

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def thread_posts(self, repository: str) -> dict[str, float]:
        """Every post of ``repository`` (id -> creation time): the ground truth."""
        key = repository.lower()
        return {
            p.id: p.created
            for p in self.posts.values()
            if self.posts[p.discussion].repository == key
        }

    # ------------------------------------------------------------ serving

    def register(self, router: Router) -> None:
        router.add(self.prefix + GRAPHQL_PATH, self._graphql)

    def _graphql(self, request: Request) -> FakeResponse:
        if request.method != "POST":
            return FakeResponse.json({"message": "Not Found"}, status=404)
        if request.headers.get("authorization", "").lower() != f"bearer {self.token}".lower():
            return FakeResponse.json(
                {
                    "message": "This endpoint requires you to be authenticated.",
                    "documentation_url": "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql",
                },
                status=401,
            )
        try:
            payload = json.loads(request.body)
            query = payload["query"]
            variables = payload.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return FakeResponse.json({"message": "Problems parsing JSON"}, status=400)
        with self._lock:
            if self.failures:
                body, headers = self.failures.pop(0)
                return self._answer(body, headers)
        from graphql import GraphQLError, graphql_sync

        try:
            cost = query_cost(query, variables)
        except GraphQLError as exc:
            return self._answer({"errors": [{"message": exc.message}]}, self._headers())
        with self._lock:
            self.used += cost
            self.queries.append((str(payload.get("operationName")), dict(variables), cost))
            result = graphql_sync(
                self.schema,
                query,
                root_value=self._root(cost),
                variable_values=variables,
                operation_name=payload.get("operationName"),
            )
        answer: dict[str, Any] = {}
        if result.data is not None:
            answer["data"] = result.data
        if result.errors:
            answer["errors"] = [_github_error(error) for error in result.errors]
        return self._answer(answer, self._headers())

    @staticmethod
    def _answer(body: Mapping[str, Any], headers: Mapping[str, str]) -> FakeResponse:
        response = FakeResponse.json(body)
        response.headers.update(headers)
        return response

    def _headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Used": str(self.used),
            "X-RateLimit-Reset": str(int(self.reset_at)),
            "X-RateLimit-Resource": "graphql",
        }

    @property
    def schema(self) -> Any:
        if self._schema is None:
            from graphql import build_schema

            self._schema = build_schema(SCHEMA_SDL)
        return self._schema

    def _root(self, cost: int) -> dict[str, Resolver]:
        return {
            "rateLimit": lambda info, dryRun=False: {
                "cost": cost,
                "limit": self.limit,
                "nodeCount": 0,
                "remaining": self.remaining,
                "resetAt": iso(self.reset_at),
                "used": self.used,
            },
            "repository": lambda info, owner, name, followRenames=True: self._repository(
                f"{owner}/{name}"
            ),
            "node": lambda info, id: self._node(id),
        }

    # ------------------------------------------------------------ resolvers

    def _repository(self, key: str) -> dict[str, Any]:
        from graphql import GraphQLError

        repo = self.repositories.get(key.lower())
        if repo is None:
            raise GraphQLError(
                f"Could not resolve to a Repository with the name '{key}'.",
                extensions={"type": "NOT_FOUND"},
            )
        return {
            "id": repo.id,
            "name": repo.name,
            "nameWithOwner": f"{repo.owner}/{repo.name}",
            "hasDiscussionsEnabled": repo.discussions_enabled,
            "discussionCategories": lambda info, **args: self._categories(repo, args),
            "discussions": lambda info, **args: self._discussions(repo, args),
            "discussion": lambda info, number: next(
                (
                    self._render(p)
                    for p in self._of(repo)
                    if p.kind == "discussion" and p.number == number
                ),
                None,
            ),
        }

    def _node(self, ident: str) -> dict[str, Any]:
        from graphql import GraphQLError

        post = self.posts.get(ident)
        if post is None:
            raise GraphQLError(
                f"Could not resolve to a node with the global id of '{ident}'",
                extensions={"type": "NOT_FOUND"},
            )
        return self._render(post)

    def _of(self, repo: FakeRepository) -> list[FakePost]:
        key = f"{repo.owner}/{repo.name}".lower()
        return [p for p in self.posts.values() if p.kind == "discussion" and p.repository == key]

    def _categories(self, repo: FakeRepository, args: Mapping[str, Any]) -> dict[str, Any]:
        nodes = [
            {"id": ident, "name": name, "slug": slug, "__typename": "DiscussionCategory"}
            for ident, (name, slug) in repo.categories.items()
        ][: args.get("first") or 100]
        return {
            "nodes": nodes,
            "edges": [{"cursor": n["id"], "node": n} for n in nodes],
            "totalCount": len(repo.categories),
            "pageInfo": {"hasNextPage": False, "hasPreviousPage": False},
        }

    def _discussions(self, repo: FakeRepository, args: Mapping[str, Any]) -> dict[str, Any]:
        order = args.get("orderBy") or {"field": "UPDATED_AT", "direction": "DESC"}
        by_update = order["field"] == "UPDATED_AT"

        def key(post: FakePost) -> tuple[float, int]:
            return (post.bumped if by_update else post.created, post.db_id)

        listed = [
            p
            for p in self._of(repo)
            if args.get("categoryId") is None or p.category == args["categoryId"]
        ]
        listed.sort(key=key, reverse=order["direction"] == "DESC")
        return _page(
            listed, args, key=key, descending=order["direction"] == "DESC", render=self._render
        )

    def _children(self, ident: str) -> list[FakePost]:
        kind = "comment" if self.posts[ident].kind == "discussion" else "reply"
        found = [
            p
            for p in self.posts.values()
            if p.kind == kind and (p.parent == ident if kind == "reply" else p.discussion == ident)
        ]
        return sorted(found, key=lambda p: (p.created, p.db_id))

    def _render(self, post: FakePost) -> dict[str, Any]:
        thread = self.posts[post.discussion]
        link = f"{WEB}/{thread.repository}/discussions/{thread.number}"
        rendered: dict[str, Any] = {
            "__typename": "Discussion" if post.kind == "discussion" else "DiscussionComment",
            "id": post.id,
            "databaseId": post.db_id,
            "createdAt": iso(post.created),
            "lastEditedAt": None,
            "author": None if post.author is None or post.deleted_at else _actor(post.author),
            "body": "" if post.deleted_at else post.body,
            "bodyHTML": "" if post.deleted_at else f"<p>{post.body}</p>",
            "bodyText": "" if post.deleted_at else post.body,
            "url": link if post.kind == "discussion" else f"{link}#discussioncomment-{post.db_id}",
        }
        if post.kind == "discussion":
            rendered |= {
                "number": post.number,
                "title": post.title,
                "updatedAt": iso(post.bumped),
                "locked": False,
                "comments": lambda info, **args: self._comments(post, args),
            }
        else:
            rendered |= {
                "updatedAt": iso(post.created),
                "deletedAt": iso(post.deleted_at) if post.deleted_at else None,
                "isAnswer": False,
                "isMinimized": False,
                "replyTo": None,
                "replies": lambda info, **args: self._comments(post, args),
            }
        rendered |= post.extra
        return rendered

    def _comments(self, post: FakePost, args: Mapping[str, Any]) -> dict[str, Any]:
        children = self._children(post.id) if post.kind != "reply" else []

        def key(child: FakePost) -> tuple[float, int]:
            return (child.created, child.db_id)

        return _page(children, args, key=key, descending=False, render=self._render)


def _page(
    ordered: list[FakePost],
    args: Mapping[str, Any],
    *,
    key: Callable[[FakePost], tuple[float, int]],
    descending: bool,
    render: Callable[[FakePost], dict[str, Any]],
) -> dict[str, Any]:
    """A connection page of ``ordered`` under GitHub's ``first``/``after``/``last``/``before``."""

    def later(post: FakePost, mark: tuple[float, int]) -> bool:
        return key(post) < mark if descending else key(post) > mark

    def earlier(post: FakePost, mark: tuple[float, int]) -> bool:
        return key(post) > mark if descending else key(post) < mark

    after, before = _position(args.get("after")), _position(args.get("before"))
    window = [
        p
        for p in ordered
        if (after is None or later(p, after)) and (before is None or earlier(p, before))
    ]
    first, last = args.get("first"), args.get("last")
    chosen = window
    if first is not None:
        chosen = window[:first]
    elif last is not None:
        chosen = window[-last:] if last else []
    start = window.index(chosen[0]) if chosen else 0
    nodes = [render(p) for p in chosen]
    cursors = [_cursor(key(p)[0], p.db_id) for p in chosen]
    return {
        "totalCount": len(ordered),
        "nodes": nodes,
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
        "pageInfo": {
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
            "hasPreviousPage": start > 0,
            "hasNextPage": start + len(chosen) < len(window),
        },
    }


def _actor(login: str) -> dict[str, Any]:
    return {
        "__typename": "User",
        "id": f"U_{login}",
        "login": login,
        "url": f"{WEB}/{login}",
        "resourcePath": f"/{login}",
        "avatarUrl": lambda info, size=None: f"https://avatars.example/{login}",
    }


def _github_error(error: Any) -> dict[str, Any]:
    """A graphql-core error in GitHub's shape: ``type`` beside the message, not under
    ``extensions``."""
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = formatted.pop("extensions", None) or {}
    if "type" in extensions:
        return {"type": extensions["type"], **formatted}
    return {**formatted, "extensions": extensions} if extensions else formatted
