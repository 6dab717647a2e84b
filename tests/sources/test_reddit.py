"""The Reddit adapter on recorded real responses (through httpx.MockTransport).

Expected numbers were worked out by hand from the files in
../shared/real-samples/reddit with one-off ``python -c 'json.load(...)'`` looks,
as noted at each test.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.config import Settings, settings_from_mapping
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch
from monitor.sources.reddit import Reddit, items_from_comment_tree
from monitor.telemetry import Telemetry

FAST = {"127.0.0.1": 100000, "www.reddit.com": 100000, "oauth.reddit.com": 100000}
DEFAULT_USER_AGENT = (
    f"python:forum-monitor:{__version__} (+https://github.com/forum-monitor/forum-monitor)"
)
"""Reddit's User-Agent when neither ``contact`` nor ``[reddit] user_agent`` is configured."""
Handler = Callable[[httpx.Request], httpx.Response]


def make_settings(
    subreddit: str = "askreddit", *, history_days: int = 30, reddit: dict[str, Any] | None = None
) -> Settings:
    return settings_from_mapping(
        {
            "http": {"rate_per_minute": FAST},
            "reddit": reddit or {},
            "communities": [
                {
                    "id": "c",
                    "source": "reddit",
                    "subreddit": subreddit,
                    "history_days": history_days,
                }
            ],
        }
    )


def make_client(telemetry: Telemetry, handler: Handler, **kwargs: Any) -> PoliteClient:
    policy = HttpPolicy(connect_timeout=2, read_timeout=2, total_timeout=5, backoff_base=0.01)
    return PoliteClient(
        policy=policy, telemetry=telemetry, transport=httpx.MockTransport(handler), **kwargs
    )


def body(path: Path) -> httpx.Response:
    return httpx.Response(
        200, content=path.read_bytes(), headers={"content-type": "application/json"}
    )


class Recorded:
    """Serves recorded bodies by listing; any ``after=`` page is the recorded empty listing."""

    def __init__(self, samples: Path, **listings: str) -> None:
        self.dir = samples / "reddit"
        self.listings = listings
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        name = request.url.path.rsplit("/", 1)[-1].removesuffix(".json")
        if "after" in request.url.params or name not in self.listings:
            # r_askreddit_comments_before_empty.json: a real empty listing, reused for
            # "nothing further back" (hand-picked stand-in, not what Reddit answered here)
            return body(self.dir / "r_askreddit_comments_before_empty.json")
        return body(self.dir / self.listings[name])

    def count(self, listing: str) -> int:
        return sum(1 for r in self.seen if r.url.path.endswith(f"/{listing}.json"))


async def poll_once(
    telemetry: Telemetry,
    handler: Handler,
    *,
    settings: Settings | None = None,
    cursor: dict[str, Any] | None = None,
    now: int | None = None,
) -> Batch:
    settings = settings or make_settings()
    client = make_client(telemetry, handler)
    try:
        source = Reddit(settings.communities[0], settings=settings, client=client)
        return await source.poll(cursor=cursor or {}, validators={}, now=now)
    finally:
        await client.aclose()


# r_askreddit_new.json was recorded 2020-07-10 23:45:55 GMT; a day later still reaches all of it.
NEW_RECORDED_AT = 1594424755


async def test_new_submissions_first_poll_then_idle(
    real_samples: Path, telemetry: Telemetry
) -> None:
    served = Recorded(real_samples, new="r_askreddit_new.json")
    batch = await poll_once(telemetry, served, now=NEW_RECORDED_AT)
    items = [e.item for e in batch.envelopes]
    # 100 t3 children; first t3_hozvuc at 1594424685, last t3_hozfbb at 1594422939; none deleted
    assert len(items) == 100
    assert {i.kind for i in items} == {"thread"}
    first = items[0]
    assert (first.external_id, first.created_at) == ("t3_hozvuc", 1594424685)
    assert (items[-1].external_id, items[-1].created_at) == ("t3_hozfbb", 1594422939)
    assert first.thread_id == "t3_hozvuc" and first.parent_id is None
    assert first.title == "What is best thing America has done for the world?"
    assert first.url == (
        "https://www.reddit.com/r/AskReddit/comments/hozvuc/"
        "what_is_best_thing_america_has_done_for_the_world/"
    )
    assert not any(i.deleted or i.edited_at for i in items)
    assert all(i.thread_id == i.external_id and i.author for i in items)
    # page 1 ends with after=t3_hozfbb and reaches nothing old, so page 2 is asked; comments: 1
    assert served.count("new") == 2 and served.count("comments") == 1
    assert batch.requests == 3
    assert served.seen[1].url.params["after"] == "t3_hozfbb"
    assert all(
        r.url.params["limit"] == "100" and r.url.params["raw_json"] == "1" for r in served.seen
    )
    assert all(r.headers["user-agent"] == DEFAULT_USER_AGENT for r in served.seen)
    assert all(r.url.host == "www.reddit.com" for r in served.seen)
    # only t3_hozvuc was created at 1594424685; no comments, so no comments cursor
    assert batch.cursor == {"submissions": {"created": 1594424685, "ids": ["t3_hozvuc"]}}

    again = Recorded(real_samples, new="r_askreddit_new.json")
    idle = await poll_once(telemetry, again, cursor=batch.cursor, now=NEW_RECORDED_AT)
    assert idle.envelopes == [] and idle.requests == 2  # one request per endpoint
    assert idle.cursor == batch.cursor


async def test_first_poll_stops_at_history_days(real_samples: Path, telemetry: Telemetry) -> None:
    served = Recorded(real_samples, new="r_askreddit_new.json")
    since = 1594424000
    batch = await poll_once(
        telemetry, served, settings=make_settings(history_days=1), now=since + 86400
    )
    ids = [e.item.external_id for e in batch.envelopes]
    # 25 children have created_utc >= 1594424000; the last is t3_hozpkj, the next t3_hozpa3
    # (1594423997) is older than `since`, so page 1 is enough
    assert len(ids) == 25 and ids[-1] == "t3_hozpkj" and "t3_hozpa3" not in ids
    assert served.count("new") == 1


async def test_new_comments_are_replies(real_samples: Path, telemetry: Telemetry) -> None:
    served = Recorded(real_samples, comments="r_askreddit_comments.json")
    batch = await poll_once(telemetry, served, now=NEW_RECORDED_AT)
    items = [e.item for e in batch.envelopes]
    # 100 t1 children: 63 answer a submission (parent t3_), 37 a comment; 70 distinct link_ids
    assert len(items) == 100 and {i.kind for i in items} == {"reply"}
    assert sum(i.parent_id is not None and i.parent_id.startswith("t3_") for i in items) == 63
    assert sum(i.parent_id is not None and i.parent_id.startswith("t1_") for i in items) == 37
    assert len({i.thread_id for i in items}) == 70
    first, last = items[0], items[-1]
    assert (first.external_id, first.thread_id, first.parent_id, first.created_at) == (
        "t1_fxl1p7i",
        "t3_hoocpo",
        "t1_fxj90f6",
        1594424717,
    )
    assert first.url == (
        "https://www.reddit.com/r/AskReddit/comments/hoocpo/"
        "dear_non_germans_what_do_you_think_of_germany/fxl1p7i/"
    )
    assert first.title == "" and first.text
    assert (last.external_id, last.thread_id, last.parent_id, last.created_at) == (
        "t1_fxl1nct",
        "t3_hoojqo",
        "t3_hoojqo",
        1594424687,
    )
    # five comments share the newest second 1594424717
    assert batch.cursor == {
        "comments": {
            "created": 1594424717,
            "ids": ["t1_fxl1p78", "t1_fxl1p7b", "t1_fxl1p7d", "t1_fxl1p7e", "t1_fxl1p7i"],
        }
    }


async def test_second_poll_takes_only_newer_comments(
    real_samples: Path, telemetry: Telemetry
) -> None:
    first = await poll_once(
        telemetry,
        Recorded(real_samples, comments="r_TEST_SUBREDDIT_comments_page1.json"),
        settings=make_settings("TEST_SUBREDDIT"),
        now=1700954800,
    )
    # page 1: 100 comments, newest t1_karibwb alone at 1700954775
    assert len(first.envelopes) == 100
    assert first.cursor["comments"] == {"created": 1700954775, "ids": ["t1_karibwb"]}
    # the recorded next listing shares 95 comments with page 1; the 2 not on page 1 and newer
    # than t1_karibwb are t1_karic2e (1700954778) and t1_karic1x (1700954777)
    served = Recorded(real_samples, comments="r_TEST_SUBREDDIT_comments_before_page.json")
    second = await poll_once(
        telemetry,
        served,
        settings=make_settings("TEST_SUBREDDIT"),
        cursor=first.cursor,
        now=1700954800,
    )
    got = [(e.item.external_id, e.item.created_at, e.item.parent_id) for e in second.envelopes]
    assert got == [
        ("t1_karic2e", 1700954778, "t3_183wmpv"),
        ("t1_karic1x", 1700954777, "t1_kap2wys"),
    ]
    assert served.count("comments") == 1
    assert second.cursor["comments"] == {"created": 1700954778, "ids": ["t1_karic2e"]}


async def test_empty_listing_is_an_idle_poll(real_samples: Path, telemetry: Telemetry) -> None:
    served = Recorded(real_samples)  # every listing: the recorded empty page
    cursor = {"comments": {"created": 1610930000, "ids": ["t1_gjo46ef"]}}
    batch = await poll_once(telemetry, served, cursor=cursor)
    assert batch.envelopes == [] and batch.requests == 2
    assert batch.cursor == cursor


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # author "[deleted]", body "[deleted]", on submission t3_52o2fl, created 1473815863
        ("api_info_t1_d7ltvl0_deleted.json", ("t1_d7ltvl0", "t3_52o2fl", "t3_52o2fl", 1473815863)),
        # author "[deleted]", body "[removed]", answering t1_fx1h7nt in t3_hlrjn9, 1593987688
        ("api_info_t1_fx1hmwb_removed.json", ("t1_fx1hmwb", "t3_hlrjn9", "t1_fx1h7nt", 1593987688)),
    ],
)
async def test_deleted_and_removed_comments_count_without_author(
    real_samples: Path, telemetry: Telemetry, name: str, expected: tuple[str, str, str, int]
) -> None:
    served = Recorded(real_samples, comments=name)
    # both comments fall within 3650 days before 2020-09-13 (1600000000)
    settings = make_settings(history_days=3650)
    batch = await poll_once(telemetry, served, settings=settings, now=1600000000)
    [item] = [e.item for e in batch.envelopes]
    assert (item.external_id, item.thread_id, item.parent_id, item.created_at) == expected
    assert item.deleted and item.author is None and item.text == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # submission t3_2gmzqe, its comment t1_cklfmye, and bboe's answer t1_cklhv0f
        (
            "comments_2gmzqe.json",
            [
                ("t3_2gmzqe", "thread", None, 1410935671),
                ("t1_cklfmye", "reply", "t3_2gmzqe", 1411005112),
                ("t1_cklhv0f", "reply", "t1_cklfmye", 1411010034),
            ],
        ),
        # the deleted comment is absent from its own context: only the submission remains
        (
            "comments_52o2fl_deleted_comment_context.json",
            [("t3_52o2fl", "thread", None, 1473815523)],
        ),
        # a chain of three comments; the "more" stub (fx1gczv) and the removed comment are absent
        (
            "comments_hlrjn9_removed_comment_context.json",
            [
                ("t3_hlrjn9", "thread", None, 1593973909),
                ("t1_fx103wp", "reply", "t3_hlrjn9", 1593978280),
                ("t1_fx12frc", "reply", "t1_fx103wp", 1593979527),
                ("t1_fx1bag2", "reply", "t1_fx12frc", 1593984301),
            ],
        ),
    ],
)
def test_comment_tree_flattens_to_items(
    real_samples: Path, name: str, expected: list[tuple[str, str, str | None, int]]
) -> None:
    payload = json.loads((real_samples / "reddit" / name).read_text())
    items = items_from_comment_tree(payload, web_root="https://www.reddit.com")
    assert [(i.external_id, i.kind, i.parent_id, i.created_at) for i in items] == expected
    thread = expected[0][0]
    assert all(i.thread_id == thread for i in items)
    assert not any(i.deleted for i in items)


def test_comment_tree_of_wrong_shape_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        items_from_comment_tree({"kind": "Listing"}, web_root="https://www.reddit.com")


def hand_made_listing() -> dict[str, Any]:
    """Hand-made (no recording has these cases): children missing fields, an edit, odd kinds."""
    ok = {"link_id": "t3_a1", "parent_id": "t3_a1", "body": "hi", "author": "someone"}
    return {
        "kind": "Listing",
        "data": {
            "after": None,
            "dist": 7,
            "children": [
                {"kind": "t1", "data": {**ok, "name": "t1_e1", "created_utc": 1700000300.0,
                                        "edited": 1700000400.5}},
                {"kind": "t1", "data": {**ok, "id": "e2", "created_utc": 1700000200.0,
                                        "author": None, "edited": True}},
                {"kind": "t1", "data": {**ok, "created_utc": 1700000100.0}},  # no id
                {"kind": "t1", "data": {**ok, "name": "t1_e4"}},  # no created_utc
                {"kind": "t1", "data": {"name": "t1_e5", "created_utc": 1700000000.0}},  # no link
                {"kind": "more", "data": {"name": "t1_e6", "children": ["e7"]}},
                "not a thing",
            ],
        },
    }  # fmt: skip


async def test_children_missing_fields_are_skipped_not_fatal(telemetry: Telemetry) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/comments.json"):
            return httpx.Response(200, json=hand_made_listing())
        return httpx.Response(200, json={"kind": "Listing", "data": {"children": []}})

    batch = await poll_once(telemetry, handler, now=1700001000)
    items = [e.item for e in batch.envelopes]
    assert [i.external_id for i in items] == ["t1_e1", "t1_e2"]  # bare id "e2" gets its prefix
    assert items[0].edited_at == 1700000400 and items[0].author == "someone"
    assert items[1].edited_at is None  # `edited: true` carries no time
    assert items[1].author is None and not items[1].deleted


@pytest.mark.parametrize("payload", [{"unexpected": True}, [], {"data": {"children": "x"}}])
async def test_wrong_shape_is_malformed(telemetry: Telemetry, payload: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=payload)

    with pytest.raises(MalformedResponse):
        await poll_once(telemetry, handler)


async def test_unknown_subreddit_redirected_to_search_is_not_found(telemetry: Telemetry) -> None:
    # hand-made: Reddit answers an unknown subreddit with a redirect to a search listing
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/r/"):
            return httpx.Response(302, headers={"location": "/subreddits/search.json?q=x"})
        return httpx.Response(200, json={"kind": "Listing", "data": {"children": []}})

    with pytest.raises(HTTPStatusError) as caught:
        await poll_once(telemetry, handler)
    assert caught.value.status == 404


class OAuthReddit:
    """Hand-made token answers (the cassette's token is redacted) plus recorded listings."""

    def __init__(self, samples: Path, *, token_body: dict[str, Any] | None = None) -> None:
        self.listings = Recorded(samples, new="r_askreddit_new.json")
        self.token_body = token_body or {"access_token": "tok-1", "expires_in": 3600}
        self.token_requests: list[httpx.Request] = []
        self.reject_next = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            self.token_requests.append(request)
            body = dict(self.token_body)
            if "access_token" in body:
                body["access_token"] = f"tok-{len(self.token_requests)}"
            return httpx.Response(200, json=body)
        if self.reject_next:
            self.reject_next -= 1
            return httpx.Response(401, json={"message": "Unauthorized", "error": 401})
        return self.listings(request)


async def test_oauth_token_then_bearer_on_oauth_host(
    real_samples: Path, telemetry: Telemetry
) -> None:
    client_id = f"id-{uuid.uuid4().hex[:8]}"  # tokens are cached per app: a fresh app per test
    settings = make_settings(reddit={"client_id": client_id, "client_secret": "s3cret"})
    served = OAuthReddit(real_samples)
    await poll_once(telemetry, served, settings=settings, now=NEW_RECORDED_AT)
    [token] = served.token_requests
    assert token.method == "POST" and str(token.url) == "https://www.reddit.com/api/v1/access_token"
    basic = base64.b64encode(f"{client_id}:s3cret".encode()).decode()
    assert token.headers["authorization"] == f"Basic {basic}"
    assert token.content == b"grant_type=client_credentials"
    assert token.headers["user-agent"] == DEFAULT_USER_AGENT
    listing = served.listings.seen
    assert {r.url.host for r in listing} == {"oauth.reddit.com"}
    assert all(r.headers["authorization"] == "bearer tok-1" for r in listing)

    # the token outlives the source: a new instance (next poll) reuses it
    await poll_once(telemetry, served, settings=settings, now=NEW_RECORDED_AT)
    assert len(served.token_requests) == 1

    # a 401 (revoked) gets one fresh token and one retry
    served.reject_next = 1
    batch = await poll_once(telemetry, served, settings=settings, now=NEW_RECORDED_AT)
    assert len(served.token_requests) == 2 and len(batch.envelopes) == 100
    assert served.listings.seen[-1].headers["authorization"] == "bearer tok-2"


async def test_token_answer_without_token_is_malformed(
    real_samples: Path, telemetry: Telemetry
) -> None:
    settings = make_settings(
        reddit={"client_id": f"id-{uuid.uuid4().hex[:8]}", "client_secret": "x"}
    )
    served = OAuthReddit(real_samples, token_body={"error": "invalid_grant"})
    with pytest.raises(MalformedResponse, match="invalid_grant"):
        await poll_once(telemetry, served, settings=settings)


async def test_rates_and_user_agent(telemetry: Telemetry) -> None:
    client = make_client(telemetry, lambda request: httpx.Response(404))
    anonymous = make_settings()
    custom = settings_from_mapping(
        {
            "reddit": {
                "client_id": "a",
                "client_secret": "b",
                "user_agent": "linux:org.example.monitor:1.2 (by /u/someone)",
            },
            "communities": [{"id": "c", "source": "reddit", "subreddit": "askreddit"}],
        }
    )
    try:
        plain = Reddit(anonymous.communities[0], settings=anonymous, client=client)
        oauth = Reddit(custom.communities[0], settings=custom, client=client)
        assert plain.rate_for("www.reddit.com") == 100000  # the [http] override wins
        assert plain.rate_for("elsewhere.example") == 10  # anonymous default
        assert oauth.rate_for("oauth.reddit.com") == 100
        assert oauth.base_url == "https://oauth.reddit.com"
        assert plain.base_url == "https://www.reddit.com"
        assert oauth.headers()["User-Agent"] == "linux:org.example.monitor:1.2 (by /u/someone)"
        # no Reddit account of ours to name: the contact (here the default) stands in
        assert plain.headers()["User-Agent"] == DEFAULT_USER_AGENT
    finally:
        await client.aclose()


@pytest.mark.parametrize(("remaining", "reset", "slept"), [("0.0", "7", [7.0]), ("57.0", "7", [])])
async def test_ratelimit_float_headers_pause_the_host(
    telemetry: Telemetry,
    registry: CollectorRegistry,
    remaining: str,
    reset: str,
    slept: list[float],
) -> None:
    # hand-made headers in Reddit's format (Remaining is a float, Reset whole seconds)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"x-ratelimit-remaining": remaining, "x-ratelimit-reset": reset}
        return httpx.Response(
            200, json={"kind": "Listing", "data": {"children": []}}, headers=headers
        )

    settings = make_settings()
    client = make_client(telemetry, handler, sleep=sleep, clock=lambda: 1000.0)
    try:
        source = Reddit(settings.communities[0], settings=settings, client=client)
        await source.poll(cursor={}, validators={}, now=2000)
        assert sleeps == slept  # the second endpoint waited out the spent budget
        gauge = registry.get_sample_value(
            "forum_monitor_rate_limit_remaining", {"host": "www.reddit.com"}
        )
        assert gauge == float(remaining)
    finally:
        await client.aclose()
