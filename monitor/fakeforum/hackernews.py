"""A fake Hacker News: the Firebase v0 item API and Algolia's ``search_by_date``.

Items are kept in Firebase's shape (``id, type, by, time, title, url, text,
parent, kids, score, descendants``; missing keys omitted, deleted items
reduced to ``id, type, time, parent, deleted``), as in the recordings under
../shared/real-samples/hackernews. Algolia hits are rendered from the same
items in the documented hit shape (no Algolia recording exists). Several
independent sites can share one server, each under its own path prefix.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from monitor.fakeforum.server import FakeResponse, Request, Router, query_value

ITEM_PATH = re.compile(r"/v0/item/(\d+)\.json")
NUMERIC_FILTER = re.compile(r"\s*(\w+)\s*(<=|>=|<|>|=)\s*(-?\d+)\s*")
ALGOLIA_RESULT_CAP = 1000  # Algolia's paginationLimitedTo on the HN index
NEW_STORIES = 500


class FakeHackerNews:
    """One site's items, served at ``prefix`` on a ``Router``."""

    def __init__(self, *, first_id: int = 1) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self._last_id = first_id - 1
        self.max_item: int | None = None
        """When set, what ``/v0/maxitem.json`` answers instead of the real newest id."""

    # ------------------------------------------------------------ building the site

    def _allocate(self) -> int:
        self._last_id += 1
        return self._last_id

    def skip_ids(self, count: int) -> None:
        """Allocate ``count`` ids that answer ``null`` (never published, or purged)."""
        self._last_id += count

    def add_raw(self, raw: dict[str, Any]) -> int:
        """Store ``raw`` as given (its ``id`` must be above every id so far, or is allocated)."""
        item_id = raw.get("id")
        if not isinstance(item_id, int) or item_id <= self._last_id:
            item_id = self._allocate()
        self._last_id = item_id
        self.items[item_id] = {**raw, "id": item_id}
        return item_id

    def add_story(
        self,
        *,
        by: str,
        title: str,
        time: int,
        url: str | None = None,
        text: str | None = None,
        kind: str = "story",
        score: int = 1,
    ) -> int:
        raw: dict[str, Any] = {"by": by, "score": score, "time": time, "title": title, "type": kind}
        if kind != "job":
            raw["descendants"] = 0
        if url is not None:
            raw["url"] = url
        if text is not None:
            raw["text"] = text
        return self.add_raw(raw)

    def add_comment(self, *, parent: int, by: str, text: str, time: int) -> int:
        item_id = self.add_raw(
            {"by": by, "parent": parent, "text": text, "time": time, "type": "comment"}
        )
        self.items[parent].setdefault("kids", []).insert(0, item_id)  # newest first, as HN
        root = self.items[self.root_of(item_id)]
        root["descendants"] = root.get("descendants", 0) + 1
        return item_id

    def delete(self, item_id: int) -> None:
        """Reduce an item to what Firebase keeps of a deleted one."""
        raw = self.items[item_id]
        kept: dict[str, Any] = {
            key: raw[key] for key in ("id", "type", "time", "parent", "kids") if key in raw
        }
        self.items[item_id] = {**kept, "deleted": True}

    def root_of(self, item_id: int) -> int:
        raw = self.items[item_id]
        while raw.get("type") == "comment" and raw.get("parent") in self.items:
            raw = self.items[raw["parent"]]
        return int(raw["id"])

    # ------------------------------------------------------------ serving

    def register(self, router: Router, *, prefix: str = "") -> None:
        router.add(
            prefix + "/v0/maxitem.json",
            lambda _r: FakeResponse.json(self._last_id if self.max_item is None else self.max_item),
        )
        router.add(prefix + "/v0/newstories.json", lambda _r: FakeResponse.json(self.new_stories()))
        router.add(
            lambda path: (
                path.startswith(prefix + "/v0/item/")
                and ITEM_PATH.fullmatch(path.removeprefix(prefix)) is not None
            ),
            lambda request: self._item(request, prefix),
        )
        router.add(prefix + "/api/v1/search_by_date", self._search)

    def _item(self, request: Request, prefix: str) -> FakeResponse:
        match = ITEM_PATH.fullmatch(request.path.removeprefix(prefix))
        assert match is not None
        return FakeResponse.json(self.items.get(int(match.group(1))))  # unknown id: null

    def new_stories(self) -> list[int]:
        ids = [
            i
            for i, raw in self.items.items()
            if raw.get("type") in ("story", "job", "poll") and not raw.get("deleted")
        ]
        return sorted(ids, reverse=True)[:NEW_STORIES]

    # ------------------------------------------------------------ Algolia

    def hit(self, raw: dict[str, Any]) -> dict[str, Any]:
        """An item in Algolia's documented hit shape."""
        created = raw["time"]  # a hostile-data test may store a time that is no integer
        stamp = (
            datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            if isinstance(created, int)
            else ""
        )
        is_comment = raw["type"] == "comment"
        root = self.items[self.root_of(raw["id"])]
        tags = ["comment" if is_comment else raw["type"], f"author_{raw.get('by')}"]
        tags.append(f"story_{root['id']}")
        return {
            "created_at": stamp,
            "title": None if is_comment else raw.get("title"),
            "url": None if is_comment else raw.get("url"),
            "author": raw.get("by"),
            "points": None if is_comment else raw.get("score"),
            "story_text": None if is_comment else raw.get("text"),
            "comment_text": raw.get("text") if is_comment else None,
            "num_comments": None if is_comment else raw.get("descendants", 0),
            "story_id": root["id"],
            "story_title": root.get("title") if is_comment else None,
            "story_url": root.get("url") if is_comment else None,
            "parent_id": raw.get("parent"),
            "created_at_i": created,
            "_tags": tags,
            "objectID": str(raw["id"]),
        }

    def _matches(self, raw: dict[str, Any], words: list[str], tags: set[str]) -> bool:
        if raw.get("deleted") or raw.get("dead") or raw.get("type") not in tags:
            return False  # Algolia drops deleted and dead items from its index
        haystack = " ".join(str(raw.get(key, "")) for key in ("title", "url", "text")).lower()
        return all(word in haystack for word in words)

    def _search(self, request: Request) -> FakeResponse:
        words = (query_value(request.query, "query", "") or "").lower().split()
        tags = _tag_set(query_value(request.query, "tags", "(story,comment)") or "")
        conditions = _numeric_filters(query_value(request.query, "numericFilters", "") or "")
        hits_per_page = min(
            1000, max(1, int(query_value(request.query, "hitsPerPage", "20") or 20))
        )
        page = max(0, int(query_value(request.query, "page", "0") or 0))
        found = [
            raw
            for raw in self.items.values()
            if self._matches(raw, words, tags) and all(c(_time_of(raw)) for c in conditions)
        ]
        found.sort(key=lambda raw: (_time_of(raw), raw["id"]), reverse=True)
        reachable = found[:ALGOLIA_RESULT_CAP]
        pages = min(
            math.ceil(len(found) / hits_per_page), math.ceil(ALGOLIA_RESULT_CAP / hits_per_page)
        )
        chunk = reachable[page * hits_per_page : (page + 1) * hits_per_page]
        return FakeResponse.json(
            {
                "hits": [self.hit(raw) for raw in chunk],
                "nbHits": len(found),
                "page": page,
                "nbPages": pages,
                "hitsPerPage": hits_per_page,
                "exhaustiveNbHits": True,
                "query": " ".join(words),
                "params": urlencode({k: v[0] for k, v in request.query.items()}),
                "processingTimeMS": 1,
            }
        )


def _time_of(raw: dict[str, Any]) -> int:
    """The item's time as the index sorts it; a hostile test's non-integer time sorts as
    the newest and matches every lower bound."""
    moment = raw["time"]
    return moment if isinstance(moment, int) else 2**62


def _tag_set(text: str) -> set[str]:
    """The item types an OR-group such as ``(story,comment)`` or a single tag asks for."""
    return {tag.strip() for tag in text.strip("()").split(",") if tag.strip()}


_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
}


def _bounded(compare: Callable[[int, int], bool], bound: int) -> Callable[[int], bool]:
    return lambda value: compare(value, bound)


def _numeric_filters(text: str) -> list[Callable[[int], bool]]:
    """``created_at_i>1,created_at_i<=9`` (AND) as predicates on created_at_i; others ignored."""
    predicates: list[Callable[[int], bool]] = []
    for part in filter(None, text.split(",")):
        match = NUMERIC_FILTER.fullmatch(part)
        if match is None or match.group(1) != "created_at_i":
            continue
        compare, bound = _COMPARISONS[match.group(2)], int(match.group(3))
        predicates.append(_bounded(compare, bound))
    return predicates
