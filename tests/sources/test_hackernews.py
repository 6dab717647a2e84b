"""The Hacker News adapter on recorded Firebase bodies and on hand-made Algolia and fault bodies.

Recorded bodies are read in place from ../shared/real-samples/hackernews and fed
through ``httpx.MockTransport``; every expected value below was read off those
files by hand (``jq '{id, type, by, time, title, parent}' FILE``,
``jq '.text | length' FILE``). No Algolia recording exists, so the search bodies
here are hand-made in the documented hit shape and labelled as such.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config import Settings, settings_from_mapping
from monitor.errors import MalformedResponse
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch, Item
from monitor.sources.hackernews import ROOT_CACHE, HackerNews, item_from_firebase, item_from_hit
from monitor.telemetry import Telemetry

API = "http://127.0.0.1:9"  # never dialled: a MockTransport answers
NOW = 1_723_640_000  # 2024-08-14 12:53:20 UTC, just after the newest recording


# ---------------------------------------------------------------- helpers (the fake tests use them)


def make_settings(
    *,
    base_url: str,
    query: str | None = None,
    search_base_url: str | None = None,
    history_days: int = 30,
) -> Settings:
    community: dict[str, Any] = {
        "id": "hn",
        "source": "hackernews",
        "base_url": base_url,
        "history_days": history_days,
    }
    if query is not None:
        community.update(query=query, search_base_url=search_base_url or base_url)
    return settings_from_mapping(
        {"http": {"rate_per_minute": {"127.0.0.1": 100000}}, "communities": [community]}
    )


def make_client(
    telemetry: Telemetry, transport: httpx.AsyncBaseTransport | None = None
) -> PoliteClient:
    policy = HttpPolicy(
        connect_timeout=2,
        read_timeout=2,
        total_timeout=5,
        max_retries=1,
        backoff_base=0.01,
        backoff_cap=0.02,
    )
    return PoliteClient(policy=policy, telemetry=telemetry, transport=transport)


def make_source(settings: Settings, client: PoliteClient) -> HackerNews:
    return HackerNews(settings.communities[0], settings=settings, client=client)


def by_id(batch: Batch) -> dict[str, Item]:
    return {envelope.item.external_id: envelope.item for envelope in batch.envelopes}


@pytest.fixture(autouse=True)
def fresh_root_cache() -> Iterator[None]:
    """The root cache is process-wide; each test starts as a freshly started process."""
    ROOT_CACHE.clear()
    yield
    ROOT_CACHE.clear()


# ---------------------------------------------------------------- a MockTransport over bodies


class Bodies:
    """Answers each path with a fixed body (Firebase's literal ``null`` when unknown)."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.paths: list[str] = []
        self.urls: list[httpx.URL] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        self.urls.append(request.url)
        body = self.bodies.get(request.url.path, b"null")
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


@pytest.fixture
async def serve(
    telemetry: Telemetry,
) -> AsyncIterator[Callable[[dict[str, bytes], str | None], tuple[HackerNews, Bodies]]]:
    clients: list[PoliteClient] = []

    def build(bodies: dict[str, bytes], query: str | None = None) -> tuple[HackerNews, Bodies]:
        answer = Bodies(bodies)
        client = make_client(telemetry, httpx.MockTransport(answer))
        clients.append(client)
        return make_source(make_settings(base_url=API, query=query), client), answer

    yield build
    for client in clients:
        await client.aclose()


def recorded(real_samples: Path, name: str) -> bytes:
    return (real_samples / "hackernews" / name).read_bytes()


def item_path(item_id: int) -> str:
    return f"/v0/item/{item_id}.json"


# ---------------------------------------------------------------- recorded Firebase items

# (file, id, author, time, title, first characters of text, length of text), from jq by hand.
RECORDED_THREADS = [
    (
        "item_41243992_story.json",
        41243992,
        "r4um",
        1723624942,
        "Examples of Great URL Design (2023)",
        "",
        0,
    ),
    (
        "item_41244648_show_hn_text.json",
        41244648,
        "shelar1423",
        1723632614,
        "Show HN: Open-source LLM provider price comparison",
        "Looking for the cheapest place",
        118,
    ),
    (
        "item_41245073_job.json",
        41245073,
        "jboula",
        1723636835,
        "Circle Medical (YC S15) Is Hiring Ruby/Rails Engineers in Montreal",
        "",
        0,
    ),
    (
        "item_41238732_ask_hn.json",
        41238732,
        "danielovichdk",
        1723576969,
        "Ask HN: Could true randomness come from sparkles from light reflecting the sea?",
        "I am not well rounded in crypt",
        464,
    ),
    (
        "item_41236273_launch_hn.json",
        41236273,
        "macklinkachorn",
        1723562087,
        "Launch HN: Trellis (YC W24) – AI-powered workflows for unstructured data",
        "Hey HN —  We&#x27;re Jacky and",  # HTML entities stay: text_is_html
        4158,
    ),
    (
        "item_8863_story_2024.json",
        8863,
        "dhouston",
        1175714200,
        "My YC app: Dropbox - Throw away your USB drive",
        "",
        0,
    ),
    (
        "item_39020365_print_pretty.json",  # ?print=pretty whitespace
        39020365,
        "virgildotcodes",
        1705445923,
        "US developers can offer non-app store purchasing, Apple still collect commission",
        "",
        0,
    ),
    (
        "doc-examples/doc_item_126809_poll.json",  # a poll is a thread; its "text" is ""
        126809,
        "pg",
        1204403652,
        "Poll: What would happen if News.YC had explicit support for polls?",
        "",
        0,
    ),
]


@pytest.mark.parametrize(
    ("name", "item_id", "author", "created", "title", "text_start", "text_length"),
    RECORDED_THREADS,
)
async def test_recorded_thread_items(
    real_samples: Path,
    serve: Callable[..., tuple[HackerNews, Bodies]],
    name: str,
    item_id: int,
    author: str,
    created: int,
    title: str,
    text_start: str,
    text_length: int,
) -> None:
    # maxitem is the recorded id and the cursor points at it: a poll of exactly one id
    source, answer = serve(
        {
            "/v0/maxitem.json": str(item_id).encode(),
            item_path(item_id): recorded(real_samples, name),
        }
    )
    batch = await source.poll(cursor={"next_id": item_id}, validators={}, now=NOW)

    assert answer.paths == ["/v0/maxitem.json", item_path(item_id)]
    assert batch.cursor == {"next_id": item_id + 1}
    [item] = [envelope.item for envelope in batch.envelopes]
    assert item.external_id == str(item_id)
    assert item.kind == "thread"
    assert item.thread_id == str(item_id)
    assert item.parent_id is None
    assert item.author == author
    assert item.created_at == created
    assert item.title == title
    assert item.text.startswith(text_start)
    assert len(item.text) == text_length
    assert item.text_is_html is True
    assert item.url == f"https://news.ycombinator.com/item?id={item_id}"
    assert item.deleted is False
    assert item.edited_at is None


async def test_recorded_comment_walks_to_its_parent(
    real_samples: Path, serve: Callable[..., tuple[HackerNews, Bodies]]
) -> None:
    # doc_item_2921983_comment.json: by norvig, time 1314211127, parent 2921506, 136 chars of
    # text. Its parent is not recorded, so the mock answers null, as Firebase does for an
    # unknown id: the chain ends there and the parent stands in as the thread root.
    bodies = {
        "/v0/maxitem.json": b"2921983",
        item_path(2921983): recorded(real_samples, "doc-examples/doc_item_2921983_comment.json"),
    }
    source, answer = serve(bodies)
    batch = await source.poll(cursor={"next_id": 2921983}, validators={}, now=NOW)

    assert answer.paths == ["/v0/maxitem.json", item_path(2921983), item_path(2921506)]
    [item] = [envelope.item for envelope in batch.envelopes]
    assert (item.external_id, item.kind) == ("2921983", "reply")
    assert (item.thread_id, item.parent_id) == ("2921506", "2921506")
    assert (item.author, item.created_at, item.title) == ("norvig", 1314211127, "")
    assert item.text.startswith("Aw shucks, guys") and len(item.text) == 136
    assert ROOT_CACHE.get(API, 2921983) is None  # a guessed root is not remembered


async def test_recorded_comment_under_recorded_story(
    real_samples: Path, serve: Callable[..., tuple[HackerNews, Bodies]]
) -> None:
    # Hand-made parent chain onto a real story: comment 41243993 (hand-made) -> 41243992.
    comment = {
        "by": "someone",
        "id": 41243993,
        "parent": 41243992,
        "text": "Nice",
        "time": 1723625000,
        "type": "comment",
    }
    bodies = {
        "/v0/maxitem.json": b"41243993",
        item_path(41243992): recorded(real_samples, "item_41243992_story.json"),
        item_path(41243993): json.dumps(comment).encode(),
    }
    source, answer = serve(bodies)
    batch = await source.poll(cursor={"next_id": 41243992}, validators={}, now=NOW)

    assert len(answer.paths) == 3  # maxitem + 2 ids; the parent is in the walked range
    items = by_id(batch)
    assert items["41243993"].thread_id == "41243992"
    assert items["41243993"].parent_id == "41243992"
    assert items["41243992"].kind == "thread"


async def test_recorded_pollopt_is_not_a_post(
    real_samples: Path, serve: Callable[..., tuple[HackerNews, Bodies]]
) -> None:
    bodies = {
        "/v0/maxitem.json": b"160705",
        item_path(160705): recorded(real_samples, "doc-examples/doc_item_160705_pollopt.json"),
    }
    source, answer = serve(bodies)
    batch = await source.poll(cursor={"next_id": 160705}, validators={}, now=NOW)
    assert batch.envelopes == []
    assert batch.cursor == {"next_id": 160706}  # passed over, never asked again
    assert len(answer.paths) == 2


def test_recorded_bodies_parse_as_pure_functions(real_samples: Path) -> None:
    # Same raw item -> same identity and time, twice; no hidden state.
    raw = json.loads(recorded(real_samples, "item_41243992_story.json"))
    assert item_from_firebase(raw) == item_from_firebase(raw)
    assert item_from_firebase(raw) is not None


# ---------------------------------------------------------------- hand-made Firebase faults


async def test_missing_fields_deleted_dead_and_null(
    serve: Callable[..., tuple[HackerNews, Bodies]],
) -> None:
    # Hand-made items 11..17 in Firebase's documented shape (none of these is recorded).
    raws: dict[int, Any] = {
        11: {"by": "a", "id": 11, "time": 1723600000, "type": "story"},  # no title/url/text/kids
        12: {"deleted": True, "id": 12, "parent": 11, "time": 1723600100, "type": "comment"},
        13: {
            "by": "b",
            "dead": True,
            "id": 13,
            "parent": 12,
            "text": "x",
            "time": 1723600200,
            "type": "comment",
        },
        14: {"by": "c", "id": 14, "title": "no time", "type": "story"},  # skipped: no time
        15: {"by": "d", "time": 1723600400, "type": "story", "title": "no id"},  # skipped: no id
        # 16 answers null (unknown id)
        17: {"by": "e", "dead": True, "id": 17, "time": 1723600600, "title": "t", "type": "story"},
    }
    bodies = {item_path(i): json.dumps(raw).encode() for i, raw in raws.items()}
    source, answer = serve({"/v0/maxitem.json": b"17", **bodies})
    batch = await source.poll(cursor={"next_id": 11}, validators={}, now=NOW)

    assert len(answer.paths) == 1 + 7  # maxitem + ids 11..17, null one included
    assert batch.cursor == {"next_id": 18}
    items = by_id(batch)
    assert sorted(items) == ["11", "12", "13", "17"]
    assert (items["11"].title, items["11"].text, items["11"].author) == ("", "", "a")
    assert items["12"].deleted and items["12"].author is None
    assert (items["12"].thread_id, items["12"].parent_id) == ("11", "11")
    assert items["13"].deleted and items["13"].author is None and items["13"].text == ""
    assert (items["13"].thread_id, items["13"].parent_id) == ("11", "12")  # via deleted 12
    assert items["17"].deleted and items["17"].title == ""


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v0/maxitem.json", b'{"unexpected": true}'),
        ("/v0/maxitem.json", b"<html>oops</html>"),
        (item_path(5), b"[1, 2, 3]"),
    ],
)
async def test_malformed_firebase_bodies(
    serve: Callable[..., tuple[HackerNews, Bodies]], path: str, body: bytes
) -> None:
    source, _ = serve({"/v0/maxitem.json": b"5", path: body})
    with pytest.raises(MalformedResponse):
        await source.poll(cursor={"next_id": 5}, validators={}, now=NOW)


async def test_idle_and_first_poll_bound(serve: Callable[..., tuple[HackerNews, Bodies]]) -> None:
    stories = {
        item_path(i): json.dumps(
            {"by": "u", "id": i, "time": NOW - 60, "title": "t", "type": "story"}
        ).encode()
        for i in range(1, 11)
    }
    source, answer = serve({"/v0/maxitem.json": b"10", **stories})
    source.max_items_per_poll = 3
    first = await source.poll(cursor={}, validators={}, now=NOW)
    # a first poll takes only the newest max_items_per_poll ids: 8, 9, 10
    assert sorted(by_id(first)) == ["10", "8", "9"]
    assert first.cursor == {"next_id": 11}
    assert first.complete is False  # ids 1..7 (still inside history_days) were not walked
    assert len(answer.paths) == 1 + 3

    answer.paths.clear()
    idle = await source.poll(cursor=first.cursor, validators={}, now=NOW)
    assert idle.envelopes == [] and idle.cursor == {"next_id": 11} and idle.complete
    assert answer.paths == ["/v0/maxitem.json"]


# ---------------------------------------------------------------- hand-made Algolia bodies

# Hand-made: no Algolia response was recorded. Shape from the HN Search API docs.
ALGOLIA_PAGE: dict[str, Any] = {
    "hits": [
        {
            "created_at": "2024-08-14T12:00:00.000Z",
            "title": None,
            "url": None,
            "author": "worker1",
            "points": None,
            "story_text": None,
            "comment_text": "Outlier cut the <i>pay</i> again",
            "num_comments": None,
            "story_id": 41240000,
            "story_title": "Scale AI layoffs",
            "story_url": "https://example.com/a",
            "parent_id": 41240100,
            "created_at_i": 1723636800,
            "_tags": ["comment", "author_worker1", "story_41240000"],
            "objectID": "41240200",
        },
        {
            "created_at": "2024-08-14T11:00:00.000Z",
            "title": "Ask HN: Is Outlier still worth it?",
            "url": None,
            "author": "worker2",
            "points": 5,
            "story_text": "Asking for a friend",
            "comment_text": None,
            "num_comments": 3,
            "story_id": 41240150,
            "story_title": None,
            "story_url": None,
            "parent_id": None,
            "created_at_i": 1723633200,
            "_tags": ["story", "author_worker2", "story_41240150", "ask_hn"],
            "objectID": "41240150",
        },
        {  # no created_at_i: the ISO created_at is used (2024-08-14T10:00:00Z = 1723629600)
            "created_at": "2024-08-14T10:00:00.000Z",
            "title": "Scale AI and Outlier",
            "url": "https://example.com/b",
            "author": None,
            "_tags": ["story"],
            "objectID": "41240100",
        },
        {"created_at_i": 1723629000, "_tags": ["story"], "title": "no objectID"},
        {"objectID": "41240050", "created_at_i": 1723628000, "_tags": ["comment"]},  # no story_id
        "not an object",
    ],
    "nbHits": 6,
    "page": 0,
    "nbPages": 1,
    "hitsPerPage": 100,
}


async def test_algolia_hits(serve: Callable[..., tuple[HackerNews, Bodies]]) -> None:
    body = json.dumps(ALGOLIA_PAGE).encode()
    source, answer = serve({"/api/v1/search_by_date": body}, "Outlier")
    batch = await source.poll(cursor={"after": 1723620000, "seen": {}}, validators={}, now=NOW)

    assert answer.paths == ["/api/v1/search_by_date"]
    items = by_id(batch)
    assert sorted(items) == ["41240100", "41240150", "41240200"]
    comment, story, bare = items["41240200"], items["41240150"], items["41240100"]
    assert (comment.kind, comment.thread_id, comment.parent_id) == ("reply", "41240000", "41240100")
    assert (comment.created_at, comment.title, comment.author) == (1723636800, "", "worker1")
    assert comment.text == "Outlier cut the <i>pay</i> again" and comment.text_is_html
    assert (story.kind, story.thread_id, story.parent_id) == ("thread", "41240150", None)
    assert (story.title, story.text) == (
        "Ask HN: Is Outlier still worth it?",
        "Asking for a friend",
    )
    assert (bare.created_at, bare.author, bare.text) == (1723629600, None, "")
    # newest hit 1723636800; the overlap window (600 s) keeps only that id in seen
    assert batch.cursor == {"after": 1723636800, "seen": {"41240200": 1723636800}}


def test_algolia_hit_parsing_is_pure() -> None:
    hit = ALGOLIA_PAGE["hits"][0]
    assert item_from_hit(hit) == item_from_hit(hit)


async def test_algolia_request_parameters(serve: Callable[..., tuple[HackerNews, Bodies]]) -> None:
    # hand-made empty answer
    empty = {"hits": [], "nbHits": 0, "page": 0, "nbPages": 0, "hitsPerPage": 100}
    source, answer = serve({"/api/v1/search_by_date": json.dumps(empty).encode()}, "Scale AI")
    # history_days defaults to 30: since = NOW - 30 * 86400
    batch = await source.poll(cursor={}, validators={}, now=NOW)
    [url] = answer.urls
    assert url.params["query"] == "Scale AI"
    assert url.params["tags"] == "(story,comment)"
    assert url.params["numericFilters"] == f"created_at_i>{NOW - 30 * 86400 - 1}"
    assert (url.params["hitsPerPage"], url.params["page"]) == ("100", "0")
    # nothing found: the cursor still moves to since - 1, never to "now"
    assert batch.cursor == {"after": NOW - 30 * 86400 - 1, "seen": {}}


@pytest.mark.parametrize(
    "body",
    [b'{"unexpected": true}', b'{"hits": "nope", "nbPages": 1, "nbHits": 1}', b"[]"],
)
async def test_malformed_algolia_bodies(
    serve: Callable[..., tuple[HackerNews, Bodies]], body: bytes
) -> None:
    source, _ = serve({"/api/v1/search_by_date": body}, "Outlier")
    with pytest.raises(MalformedResponse):
        await source.poll(cursor={}, validators={}, now=NOW)
