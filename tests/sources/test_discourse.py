"""The Discourse adapter on recorded real responses (through httpx.MockTransport).

Expected numbers were worked out by hand from ../shared/real-samples/discourse
with one-off ``python -c 'json.load(...)'`` looks at the files, as noted at
each test; epoch seconds were converted from the files' ISO times by hand
(e.g. 2019-08-05T00:00:00Z = 1564963200, 2026-01-22T00:00:00Z = 1769040000).
Where a case has no recording, the JSON is hand-made and says so.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config import DiscourseCommunity, Settings, settings_from_mapping
from monitor.errors import MalformedResponse
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch, Item
from monitor.sources.discourse import (
    Discourse,
    UnknownCategory,
    parse_time,
    post_item,
    resolve_category,
)
from monitor.telemetry import Telemetry

BASE = "http://127.0.0.1:9/forum"  # never dialled: every test here uses MockTransport
EMPTY_PAGE = {"latest_posts": []}  # hand-made: what /posts.json answers below the oldest post
Route = Callable[[httpx.Request], httpx.Response]


def json_response(payload: Any) -> httpx.Response:
    return httpx.Response(200, json=payload)


def file_response(path: Path) -> httpx.Response:
    return httpx.Response(
        200, content=path.read_bytes(), headers={"content-type": "application/json"}
    )


def make_settings(*, api_key: str | None = None) -> Settings:
    return settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "discourse": {"api_key": api_key} if api_key else {},
        }
    )


def make_community(**overrides: Any) -> DiscourseCommunity:
    fields = {"id": "forum", "source": "discourse", "base_url": BASE, **overrides}
    return DiscourseCommunity.model_validate(fields)


class Replay:
    """A MockTransport handler: ``/posts.json`` pages keyed by ``before`` (None = newest)."""

    def __init__(
        self,
        pages: Mapping[str | None, Any],
        *,
        categories: Path | None = None,
    ) -> None:
        self.pages = pages
        self.categories = categories
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/forum/categories.json" and self.categories is not None:
            return file_response(self.categories)
        assert request.url.path == "/forum/posts.json", request.url
        page = self.pages[request.url.params.get("before")]
        return file_response(page) if isinstance(page, Path) else json_response(page)

    def befores(self) -> list[str | None]:
        return [r.url.params.get("before") for r in self.requests]


async def poll(
    telemetry: Telemetry,
    replay: Replay,
    *,
    cursor: dict[str, Any] | None = None,
    now: int,
    settings: Settings | None = None,
    **community: Any,
) -> Batch:
    policy = HttpPolicy(connect_timeout=2, read_timeout=2, total_timeout=5, backoff_base=0.01)
    client = PoliteClient(policy=policy, telemetry=telemetry, transport=httpx.MockTransport(replay))
    try:
        source = Discourse(
            make_community(**community), settings=settings or make_settings(), client=client
        )
        return await source.poll(cursor=cursor or {}, validators={}, now=now)
    finally:
        await client.aclose()


def by_id(batch: Batch) -> dict[str, Item]:
    return {e.item.external_id: e.item for e in batch.envelopes}


def test_parse_time_floors_to_utc_epoch_seconds() -> None:
    # 2019-08-04T20:50:39Z = 1564963200 (2019-08-05T00:00Z) - 3h 9m 21s = 1564951839
    assert parse_time("2019-08-04T20:50:39.667Z") == 1564951839
    assert parse_time("2019-08-04T22:50:39.999+02:00") == 1564951839
    assert parse_time("2019-08-04T20:50:39") == 1564951839  # no zone: Discourse means UTC
    assert parse_time("yesterday") is None
    assert parse_time(1564951839) is None


async def test_posts_2019_whole_forum(real_samples: Path, telemetry: Telemetry) -> None:
    # posts_2019.json holds 7 posts, ids 22, 18, 17, 16, 14, 10, 1 (the whole test forum);
    # post_number 1 for ids 17, 14, 10, 1 -> 4 thread starts, 3 replies. history_days=3650
    # reaches before all of them, so the adapter asks for the page below id 1 (empty).
    folder = real_samples / "discourse"
    replay = Replay({None: folder / "posts_2019.json", "1": EMPTY_PAGE})
    batch = await poll(telemetry, replay, now=1564963200, history_days=3650)

    assert replay.befores() == [None, "1"]
    assert batch.requests == 2
    # last_time: the newest creation time seen, id 22's 2019-08-04T20:50:39.667Z
    assert batch.cursor == {"last_id": 22, "last_time": 1564951839}
    items = by_id(batch)
    assert set(items) == {"11/3", "13/2", "13/1", "11/2", "11/1", "7/1", "1/1"}
    assert sorted(k for k, i in items.items() if i.kind == "thread") == [
        "1/1",
        "11/1",
        "13/1",
        "7/1",
    ]
    latest = items["11/3"]  # id 22, topic 11, post_number 3, no reply_to_post_number
    assert (latest.kind, latest.thread_id, latest.parent_id) == ("reply", "11/1", "11/1")
    assert latest.author == "d11"
    assert latest.created_at == 1564951839  # 2019-08-04T20:50:39.667Z
    assert latest.text == "Adding another post, after having deleted a whole thread."
    assert latest.text_is_html is False  # /posts.json sends raw
    assert latest.url == BASE + "/t/my-first-test-post/11/3"
    assert latest.title == ""
    assert latest.edited_at is None and latest.deleted is False
    # id 18: version 3, updated_at 2019-08-02T11:17:12.745Z = 1564744632
    assert items["13/2"].edited_at == 1564744632
    # id 10: version 2, updated_at 2019-04-10T23:16:19.366Z = 1554938179
    assert items["7/1"].edited_at == 1554938179
    assert items["7/1"].title == "Welcome to Discourse"
    # id 1: created 2019-04-02T20:20:09.844Z = 1554236409
    assert items["1/1"].created_at == 1554236409
    assert items["1/1"].title == "About the Site Feedback category"


async def test_posts_2019_first_poll_stops_at_history_days(
    real_samples: Path, telemetry: Telemetry
) -> None:
    # now 2019-08-05T00:00Z, history_days 30 -> since 2019-07-06T00:00Z. Ids 22..14 were
    # created 2019-08-02..04 (kept); ids 10 and 1 on 2019-04-02 (older): the first page
    # reaches the floor, so no second request.
    replay = Replay({None: real_samples / "discourse" / "posts_2019.json"})
    batch = await poll(telemetry, replay, now=1564963200, history_days=30)

    assert replay.befores() == [None]
    assert set(by_id(batch)) == {"11/3", "13/2", "13/1", "11/2", "11/1"}
    # the newest id and time seen, kept or not (id 22, 2019-08-04T20:50:39.667Z)
    assert batch.cursor == {"last_id": 22, "last_time": 1564951839}


async def test_incremental_poll_takes_only_posts_above_the_cursor(
    real_samples: Path, telemetry: Telemetry
) -> None:
    # discourse_api_posts_latest.json: ids 15, 14, 10, 2; with last_id 14 only id 15 is
    # new: topic 11, post_number 2, johndoe, 2020-01-25T02:10:07.971Z = 1579918207.
    replay = Replay({None: real_samples / "discourse" / "discourse_api_posts_latest.json"})
    batch = await poll(telemetry, replay, cursor={"last_id": 14}, now=1579918300)

    assert batch.requests == 1
    assert batch.cursor == {"last_id": 15, "last_time": 1579918207}
    [item] = [e.item for e in batch.envelopes]
    assert (item.external_id, item.kind, item.parent_id) == ("11/2", "reply", "11/1")
    assert (item.author, item.created_at, item.text) == ("johndoe", 1579918207, "holla bullhonky.")


async def test_cut_short_range_is_finished_from_the_recorded_before_page(
    real_samples: Path, telemetry: Telemetry
) -> None:
    # A first poll that stopped after the newest page left ids below 15 pending (a cursor
    # written before last_time and top_time existed). The next poll asks before=15
    # (discourse_api_posts_before.json: ids 14, 10, 2, all after floor_time 0), then the
    # page below id 2 (empty: range done, last_id = top 15), then the newest page (ids
    # 15, 14, 10, 2: none above 15). New: ids 14, 10, 2 = topic 11 post 1, topic 7 post
    # 1, topic 2 post 1. last_time is learned from the newest page: id 15, 1579918207.
    folder = real_samples / "discourse"
    replay = Replay(
        {
            "15": folder / "discourse_api_posts_before.json",
            "2": EMPTY_PAGE,
            None: folder / "discourse_api_posts_latest.json",
        }
    )
    cursor = {"last_id": None, "pending": {"before": 15, "top": 15, "floor_time": 0}}
    batch = await poll(telemetry, replay, cursor=cursor, now=1579918300)

    assert replay.befores() == ["15", "2", None]
    assert set(by_id(batch)) == {"11/1", "7/1", "2/1"}
    assert batch.cursor == {"last_id": 15, "last_time": 1579918207}
    # caught up: the first poll's walk is complete from its floor_time (0)
    assert (batch.complete, batch.covered_from) == (True, 0)


async def test_cf_posts_page_of_fifty(real_samples: Path, telemetry: Telemetry) -> None:
    # cf_posts.json: 50 posts, ids 20218 down to 20169 (another forum, 2026). now
    # 2026-01-22T00:00Z with history_days 3 -> since 2026-01-19T00:00Z: ids 20181..20218
    # (38 posts) are newer, id 20180 (2026-01-18T23:03Z) is older -> one request.
    # post_number 1 only for ids 20218 (topic 2148) and 20203 (topic 2147); the 38 posts
    # fall in topics 1491, 1932, 2108, 2132, 2144, 2147, 2148.
    replay = Replay({None: real_samples / "discourse" / "cf_posts.json"})
    batch = await poll(telemetry, replay, now=1769040000, history_days=3)

    items = by_id(batch)
    assert batch.requests == 1
    assert len(items) == 38
    assert sorted(k for k, i in items.items() if i.kind == "thread") == ["2147/1", "2148/1"]
    assert {i.thread_id for i in items.values()} == {
        f"{t}/1" for t in (1491, 1932, 2108, 2132, 2144, 2147, 2148)
    }
    start = items["2148/1"]  # id 20218, version 3
    assert start.title == "People Being Bad at Logic"
    assert start.author == "Elliot"
    assert start.created_at == 1769038182  # 2026-01-21T23:29:42.524Z
    assert start.edited_at == 1769038989  # updated_at 2026-01-21T23:43:09.090Z
    assert start.text.startswith("I was talking with someone about people not being very good")
    assert start.url == BASE + "/t/people-being-bad-at-logic/2148/1"
    assert items["2144/31"].parent_id == "2144/28"  # id 20217: reply_to_post_number 28
    assert items["1491/188"].parent_id == "1491/1"  # id 20194: reply_to_post_number null
    assert items["2144/13"].created_at == 1768793200  # id 20186: 2026-01-19T03:26:40.138Z
    assert batch.cursor == {"last_id": 20218, "last_time": 1769038182}


def test_topic_endpoints_give_the_same_identity(real_samples: Path) -> None:
    # The adapter reads /posts.json only; the topic endpoints carry the same post shape,
    # and the same post must get the same identity and time from either.
    folder = real_samples / "discourse"

    def posts(name: str) -> list[dict[str, Any]]:
        return list(json.loads((folder / name).read_text())["post_stream"]["posts"])

    def parsed(raw_posts: list[dict[str, Any]]) -> dict[int, Item]:
        items = {raw["id"]: post_item(raw, base_url=BASE) for raw in raw_posts}
        assert None not in items.values()
        return {k: v for k, v in items.items() if v is not None}

    listing = parsed(json.loads((folder / "posts_2019.json").read_text())["latest_posts"])
    topic_11 = parsed(posts("t_11.json"))  # ids 14, 16, 22 = post_numbers 1, 2, 3
    assert [i.external_id for i in topic_11.values()] == ["11/1", "11/2", "11/3"]
    for post_id, item in topic_11.items():
        assert (item.external_id, item.created_at) == (
            listing[post_id].external_id,
            listing[post_id].created_at,
        )
    assert topic_11[14].title == ""  # the topic endpoint has no topic_title on posts
    assert topic_11[14].text_is_html is True  # nor raw: the cooked HTML is the text

    # t_26.json has post_numbers 1..20 inline (chunk_size 20), t_26_page2.json post 21.
    topic_26 = parsed(posts("t_26.json") + posts("t_26_page2.json"))
    assert [i.external_id for i in topic_26.values()] == [f"26/{n}" for n in range(1, 22)]
    assert [i.kind for i in topic_26.values()].count("thread") == 1
    assert {i.parent_id for i in topic_26.values() if i.kind == "reply"} == {"26/1"}
    assert topic_26[54].created_at == 1573839872  # post 21: 2019-11-15T17:44:32.244Z

    # cf_t_2144_posts.json and cf_posts.json share ids 20182, 20186..20189, 20193, 20196,
    # 20198..20200 (10 posts).
    cf_listing = parsed(json.loads((folder / "cf_posts.json").read_text())["latest_posts"])
    cf_topic = parsed(posts("cf_t_2144_posts.json"))
    shared = sorted(set(cf_listing) & set(cf_topic))
    assert len(shared) == 10
    for post_id in shared:
        a, b = cf_listing[post_id], cf_topic[post_id]
        assert (a.external_id, a.parent_id, a.created_at) == (
            b.external_id,
            b.parent_id,
            b.created_at,
        )
    assert cf_topic[20186].parent_id == "2144/3"
    # ?post_number=21 answers post_numbers 20 down to 1 without 7 (19 posts, none is 21)
    around = parsed(posts("cf_t_2144_posts_post_number_21.json"))
    assert {i.external_id for i in around.values()} == {f"2144/{n}" for n in range(1, 21) if n != 7}

    single = post_item(json.loads((folder / "posts_14_2019.json").read_text()), base_url=BASE)
    assert single is not None
    assert (single.external_id, single.kind, single.created_at) == ("11/1", "thread", 1564744349)


def test_resolve_category_from_recorded_categories(real_samples: Path) -> None:
    # categories.json: filler (5) with subcategory_ids [6], uncategorized (1),
    # site-feedback (2); category 6 is not listed at the top level.
    body = json.loads((real_samples / "discourse" / "categories.json").read_text())
    url = BASE + "/categories.json"
    assert resolve_category(body, wanted="filler", url=url) == {5, 6}
    assert resolve_category(body, wanted="Site-Feedback", url=url) == {2}
    assert resolve_category(body, wanted="5", url=url) == {5, 6}
    assert resolve_category(body, wanted="6", url=url) == {6}
    with pytest.raises(UnknownCategory) as caught:
        resolve_category(body, wanted="pay-rates", url=url)
    assert caught.value.reason == "http_4xx"
    with pytest.raises(MalformedResponse):
        resolve_category({"unexpected": True}, wanted="filler", url=url)


async def test_category_filter_on_recorded_posts(real_samples: Path, telemetry: Telemetry) -> None:
    # site-feedback is category 2; in posts_2019.json only id 1 (topic 1) has
    # category_id 2, the other six have 1. Requests: categories.json, the newest page,
    # the empty page below id 1.
    folder = real_samples / "discourse"
    replay = Replay(
        {None: folder / "posts_2019.json", "1": EMPTY_PAGE},
        categories=folder / "categories.json",
    )
    batch = await poll(
        telemetry, replay, now=1564963200, history_days=3650, category="site-feedback"
    )
    assert [r.url.path for r in replay.requests] == [
        "/forum/categories.json",
        "/forum/posts.json",
        "/forum/posts.json",
    ]
    assert set(by_id(batch)) == {"1/1"}
    # the cursor moves with every post seen, in the category or not (id 22 is in 1)
    assert batch.cursor == {
        "last_id": 22,
        "last_time": 1564951839,
        "category": "site-feedback",
        "category_ids": [2],
    }

    # the next poll reads the ids from the cursor: one request, nothing new
    again = Replay({None: folder / "posts_2019.json"})
    idle = await poll(
        telemetry,
        again,
        cursor=batch.cursor,
        now=1564963200,
        category="site-feedback",
    )
    assert [r.url.path for r in again.requests] == ["/forum/posts.json"]
    assert idle.envelopes == []


async def test_api_key_and_username_headers(real_samples: Path, telemetry: Telemetry) -> None:
    folder = real_samples / "discourse"
    replay = Replay({None: folder / "discourse_api_posts_latest.json"})
    await poll(
        telemetry,
        replay,
        cursor={"last_id": 15},
        now=1579918300,
        settings=make_settings(api_key="k-123"),
        api_username="system",
    )
    sent = replay.requests[0].headers
    assert (sent["Api-Key"], sent["Api-Username"]) == ("k-123", "system")

    anonymous = Replay({None: folder / "discourse_api_posts_latest.json"})
    await poll(telemetry, anonymous, cursor={"last_id": 15}, now=1579918300)
    assert "Api-Key" not in anonymous.requests[0].headers
    assert "Api-Username" not in anonymous.requests[0].headers


def marked_page(real_samples: Path) -> dict[str, Any]:
    """Hand-made from posts_2019.json: deletion markers, skipped types, missing fields.

    No recording has a deleted, hidden or small-action post, so these are edited
    copies of the recorded posts plus one minimal hand-made post (id 30).
    """
    recorded = json.loads((real_samples / "discourse" / "posts_2019.json").read_text())
    posts = {p["id"]: copy.deepcopy(p) for p in recorded["latest_posts"]}
    posts[22]["deleted_at"] = "2019-08-05T00:00:00.000Z"  # deleted by staff
    posts[18]["user_deleted"] = True  # withdrawn by its author, whose account is gone
    posts[18]["username"] = None
    posts[17]["hidden"] = True  # hidden by flags
    posts[16]["post_type"] = 3  # small action
    posts[1]["post_type"] = 2  # moderator action
    del posts[14]["created_at"]
    del posts[10]["id"]
    minimal = {"id": 30, "topic_id": 40, "post_number": 2, "created_at": "2019-08-06T00:00:00Z"}
    return {"latest_posts": [minimal, "not a post", *posts.values()]}


async def test_deleted_skipped_and_incomplete_posts(
    real_samples: Path, telemetry: Telemetry
) -> None:
    # From marked_page: kept are id 30 (minimal), 22 (deleted_at), 18 (user_deleted,
    # no name), 17 (hidden); skipped are 16 and 1 (post types 3 and 2), 14 (no time),
    # 10 (no id) and the string entry; 14 and 10 are rejected (missing_field), counted.
    # The lowest id on the page is 1 -> before=1 next.
    replay = Replay({None: marked_page(real_samples), "1": EMPTY_PAGE})
    batch = await poll(telemetry, replay, now=1565049600, history_days=3650)

    items = by_id(batch)
    assert set(items) == {"40/2", "11/3", "13/2", "13/1"}
    assert sorted(reason for reason, _ in batch.rejected) == ["missing_field"] * 2
    assert batch.cursor == {"last_id": 30, "last_time": 1565049600}  # id 30's time
    minimal = items["40/2"]
    assert (minimal.kind, minimal.thread_id, minimal.parent_id) == ("reply", "40/1", "40/1")
    assert (minimal.author, minimal.text, minimal.deleted) == (None, "", False)
    assert minimal.url == BASE + "/t/40/2"
    assert minimal.created_at == 1565049600  # 2019-08-06T00:00:00Z
    assert (items["11/3"].deleted, items["11/3"].author) == (True, "d11")
    assert (items["13/2"].deleted, items["13/2"].author) == (True, None)
    assert items["13/1"].deleted is True


@pytest.mark.parametrize(
    "payload",
    [
        {"unexpected": True},
        {"latest_posts": {"id": 1}},
        [],
        "latest_posts",
    ],
)
async def test_body_of_the_wrong_shape_is_malformed(telemetry: Telemetry, payload: Any) -> None:
    replay = Replay({None: payload})  # hand-made bodies
    with pytest.raises(MalformedResponse) as caught:
        await poll(telemetry, replay, now=1565049600)
    assert caught.value.reason == "malformed"


async def test_html_error_page_is_malformed(telemetry: Telemetry) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"<html><body>Oops</body></html>", headers={"content-type": "text/html"}
        )

    policy = HttpPolicy(connect_timeout=2, read_timeout=2, total_timeout=5, backoff_base=0.01)
    client = PoliteClient(
        policy=policy, telemetry=telemetry, transport=httpx.MockTransport(handler)
    )
    try:
        source = Discourse(make_community(), settings=make_settings(), client=client)
        with pytest.raises(MalformedResponse):
            await source.poll(cursor={}, validators={}, now=1565049600)
    finally:
        await client.aclose()
