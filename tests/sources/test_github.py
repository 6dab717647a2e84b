"""The GitHub Discussions adapter on the recorded real responses (read in place through the
``real_samples`` fixture; see shared/real-samples/github-discussions/PROVENANCE.md).

Counts were worked out from the files: the three list pages of PyGithub/PyGithub hold
30 + 30 + 5 = 65 discussions, 31 + 21 + 3 = 55 comments and 20 + 10 + 1 = 31 replies;
discussion #2619 (page 1) and one comment of #1864 (page 2) have ``author: null``. The
pages did not ask for ``updatedAt`` or ``bodyText``, so the adapter reads them without.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Settings, settings_from_mapping
from monitor.errors import HTTPStatusError
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch
from monitor.sources.github import (
    GitHub,
    RepositoryNotFound,
    activity,
    comment_item,
    discussion_item,
    discussion_url_pattern,
    parse_time,
)
from monitor.telemetry import Telemetry

RECORDED = 1_726_570_812
"""2024-09-17T11:00:12Z, the Date header of the first list page: the recording's "now"."""
JUNE_2023 = 1_685_577_600
"""2023-06-01T00:00:00Z"""
PAGES = [
    "discussions_page1_with_comments_replies.json",
    "discussions_page2_with_comments_replies.json",
    "discussions_page3_last_with_comments_replies.json",
]
PAGE1_END = "Y3Vyc29yOnYyOpK5MjAyMy0wMy0xNFQwOTozNjoxOSswMTowMM4AQ6mO"
PAGE2_END = "Y3Vyc29yOnYyOpK5MjAyMS0wNS0wMVQwNTozMzoxMCswMjowMM4AMwlT"
LINKS = discussion_url_pattern("PyGithub/PyGithub")


@pytest.fixture(scope="module")
def samples(real_samples: Path) -> Path:
    return real_samples / "github-discussions"


def nodes(samples: Path, name: str) -> list[dict[str, Any]]:
    body = json.loads((samples / name).read_bytes())
    return list(body["data"]["repository"]["discussions"]["nodes"])


def posts_of(node: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(comment items, reply items) of one recorded discussion."""
    comments, replies = [], []
    for comment in node["comments"]["nodes"]:
        comments.append(
            comment_item(comment, discussion=node["id"], parent=node["id"], links=LINKS)
        )
        for reply in comment["replies"]["nodes"]:
            replies.append(
                comment_item(reply, discussion=node["id"], parent=comment["id"], links=LINKS)
            )
    return comments, replies


@pytest.mark.parametrize(
    ("page", "discussions", "comments", "replies", "ghosts"),
    [(PAGES[0], 30, 31, 20, 1), (PAGES[1], 30, 21, 10, 1), (PAGES[2], 5, 3, 1, 0)],
)
def test_every_recorded_post_parses(
    samples: Path, page: str, discussions: int, comments: int, replies: int, ghosts: int
) -> None:
    threads = [discussion_item(node, links=LINKS) for node in nodes(samples, page)]
    found = [posts_of(node) for node in nodes(samples, page)]
    answers = [item for pair in found for item in pair[0]]
    nested = [item for pair in found for item in pair[1]]
    assert (len(threads), len(answers), len(nested)) == (discussions, comments, replies)
    every = [*threads, *answers, *nested]
    assert all(item is not None for item in every)
    assert sum(item.author is None for item in every if item) == ghosts
    for item in every:
        assert item is not None
        assert item.url is not None and "/PyGithub/PyGithub/discussions/" in item.url
        assert item.text == ""  # the list pages did not ask for bodies
    for item in nested:  # a reply's parent is its comment, its thread the discussion
        assert item is not None and item.parent_id != item.thread_id


def test_a_deleted_account_is_a_post_without_author(samples: Path) -> None:
    ghost = next(n for n in nodes(samples, PAGES[0]) if n["number"] == 2619)
    item = discussion_item(ghost, links=LINKS)
    assert ghost["author"] is None and item is not None
    assert (item.author, item.external_id, item.created_at) == (
        None,
        "D_kwDOADYVqs4AUj0g",
        parse_time("2023-07-10T23:57:46Z"),
    )
    assert item.title and not item.deleted  # a ghost's post still counts


def test_the_recorded_order_is_the_order_of_latest_activity(samples: Path) -> None:
    """GitHub's default order (UPDATED_AT) lists discussions by their newest post, a reply
    to an old comment included: the walk's stop rests on this. 65 discussions, 3 pages."""
    listed = [node for page in PAGES for node in nodes(samples, page)]
    moments = [activity(node, plausible=lambda _: True) for node in listed]
    assert len(moments) == 65 and None not in moments
    assert moments == sorted(moments, reverse=True)  # type: ignore[type-var]
    # #2104 was opened in 2021; a reply on 2023-06-27 to its 2021 comment placed it
    # between #2559 (last post 2023-06-29) and #2539 (2023-06-23)
    numbers = [node["number"] for node in listed]
    at = numbers.index(2104)
    assert numbers[at - 1 : at + 2] == [2559, 2104, 2539]
    assert moments[at] == parse_time("2023-06-28T07:56:38Z")


def test_updated_at_follows_the_newest_comment_or_reply(samples: Path) -> None:
    """The two full discussions carry ``updatedAt``: #2993's is its newest comment's time,
    #2480's is 11 s after its newest reply (2023-03-30T16:18:48Z)."""
    listed = {node["id"]: node for node in nodes(samples, PAGES[0])}
    for name, newest in [
        ("discussion_node_full_with_answer.json", "2024-08-29T16:01:00Z"),
        ("discussion_node_full_unanswered.json", "2023-03-30T16:18:48Z"),
    ]:
        full = json.loads((samples / name).read_bytes())["data"]["node"]
        shown = listed[full["id"]]
        assert activity(shown, plausible=lambda _: True) == parse_time(newest)
        updated = parse_time(full["updatedAt"])
        assert updated is not None and updated >= parse_time(newest)  # type: ignore[operator]
        # with it, the activity of the full node is its updatedAt
        assert activity(full, plausible=lambda _: True) == updated


def test_a_full_discussion_keeps_its_text(samples: Path) -> None:
    full = json.loads((samples / "discussion_node_full_with_answer.json").read_bytes())
    item = discussion_item(full["data"]["node"], links=LINKS)
    assert item is not None
    assert item.title == "How to get a list of custom repository properties?"
    assert item.text.startswith("What is the equivalent of https://api.github.com/repos/")
    assert item.author == "heitorPB" and not item.text_is_html
    assert item.url == "https://github.com/PyGithub/PyGithub/discussions/2993"


def test_links_naming_a_person_or_another_place_are_not_kept() -> None:
    base = {"id": "DC_x", "createdAt": "2024-01-01T00:00:00Z", "author": {"login": "someone"}}
    for url in [
        "https://github.com/someone",
        "https://github.com/PyGithub/PyGithub/discussions/1/../../../someone",
        "https://github.com/Other/Repo/discussions/3",
        "javascript:alert(1)",
    ]:
        item = comment_item({**base, "url": url}, discussion="D", parent="D", links=LINKS)
        assert item is not None and item.url is None, url
    kept = "https://github.com/pygithub/pygithub/discussions/3#discussioncomment-4"
    item = comment_item({**base, "url": kept}, discussion="D", parent="D", links=LINKS)
    assert item is not None and item.url == kept


# -- the adapter, served the recorded pages on 127.0.0.1 ------------------------------


class Recorded:
    """Answers each Discussions query with the recorded page its ``after`` asks for,
    byte for byte, and remembers what was asked."""

    def __init__(self, samples: Path) -> None:
        self.pages = {
            None: (samples / PAGES[0]).read_bytes(),
            PAGE1_END: (samples / PAGES[1]).read_bytes(),
            PAGE2_END: (samples / PAGES[2]).read_bytes(),
        }
        self.asked: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []

    def __call__(self, request: Request) -> FakeResponse:
        payload = json.loads(request.body)
        self.asked.append(payload)
        self.authorization.append(request.headers.get("authorization"))
        body = self.pages[payload["variables"]["after"]]
        return FakeResponse(200, body, {"Content-Type": "application/json; charset=utf-8"})


@pytest.fixture
def recorded(samples: Path) -> Iterator[tuple[Recorded, FakeForumServer]]:
    handler = Recorded(samples)
    with FakeForumServer(handler) as server:
        yield handler, server


def settings_for(server: FakeForumServer, **community: Any) -> Settings:
    return settings_from_mapping(
        {
            "http": {"rate_per_minute": {"127.0.0.1": 100000}},
            "github": {"token": "recorded-token"},
            "communities": [
                {
                    "id": "pygithub",
                    "source": "github",
                    "repository": "PyGithub/PyGithub",
                    "base_url": server.base_url,
                    "history_days": 3650,
                    **community,
                }
            ],
        }
    )


async def poll_recorded(settings: Settings, telemetry: Telemetry, *, since: int) -> Batch:
    policy = HttpPolicy(connect_timeout=2, read_timeout=2, total_timeout=5, max_retries=0)
    client = PoliteClient(policy=policy, telemetry=telemetry)
    try:
        source = GitHub(settings.communities[0], settings=settings, client=client)
        return await source.poll(cursor={}, validators={}, now=RECORDED, resume_from=since)
    finally:
        await client.aclose()


async def test_a_first_poll_reads_all_three_recorded_pages(
    recorded: tuple[Recorded, FakeForumServer], telemetry: Telemetry
) -> None:
    handler, server = recorded
    batch = await poll_recorded(settings_for(server), telemetry, since=0)
    # 65 discussions + 55 comments + 31 replies, each once; three pages, three requests
    kinds = [e.item.kind for e in batch.envelopes]
    assert (kinds.count("thread"), kinds.count("reply")) == (65, 86)
    assert batch.requests == 3 and batch.complete and batch.covered_from is None
    assert [a["variables"]["after"] for a in handler.asked] == [None, PAGE1_END, PAGE2_END]
    assert [a["operationName"] for a in handler.asked] == ["Discussions"] * 3
    assert handler.authorization == ["bearer recorded-token"] * 3
    assert sum(e.item.author is None for e in batch.envelopes) == 2  # #2619, a #1864 comment
    legacy = [e.item for e in batch.envelopes if e.item.external_id.startswith("MDEw")]
    # the old-format ids are kept as they are: 10 discussions of page 2 (#2013 to #1936)
    # and all 5 of page 3
    assert len(legacy) == 15
    assert batch.cursor["mark"] == parse_time("2024-09-13T17:23:09Z")  # #3044, the newest


async def test_a_first_poll_stops_at_history_days_on_the_first_page(
    recorded: tuple[Recorded, FakeForumServer], telemetry: Telemetry
) -> None:
    """From 2023-06-01: the 25 most active discussions of page 1 have activity since, the
    26th (#2177, last post 2023-04-27) ends the walk. Their posts from 2023-06-01 on: 20
    discussions opened since, and 26 comments and replies (#2104's three among them, one a
    2023 reply to a 2021 comment)."""
    handler, server = recorded
    batch = await poll_recorded(settings_for(server), telemetry, since=JUNE_2023)
    kinds = [e.item.kind for e in batch.envelopes]
    assert (kinds.count("thread"), kinds.count("reply")) == (20, 26)
    assert batch.requests == 1 and batch.complete
    assert all(e.item.created_at >= JUNE_2023 for e in batch.envelopes)
    late = {e.item.external_id: e.item for e in batch.envelopes}["DC_kwDOADYVqs4AYA3y"]
    assert late.parent_id == "DC_kwDOADYVqs4AGNAD"  # the 2021 comment it answers
    # the cursor remembers only the discussions of the last 120 s before the newest: #3044
    assert list(batch.cursor["known"]) == ["D_kwDOADYVqs4AbYx8"]


async def test_the_recorded_not_found_error_is_a_failure_not_an_empty_page(
    samples: Path, telemetry: Telemetry
) -> None:
    """``error_not_found_node.json``: HTTP 200, ``data.node`` null and a NOT_FOUND error.
    Served for the list query it has no ``repository``: the repository is not there."""
    body = (samples / "error_not_found_node.json").read_bytes()
    with FakeForumServer(lambda _r: FakeResponse(200, body, {})) as server:
        with pytest.raises(RepositoryNotFound) as caught:
            await poll_recorded(settings_for(server), telemetry, since=0)
    assert isinstance(caught.value, HTTPStatusError) and caught.value.status == 404
    assert "PyGithub/PyGithub" in str(caught.value) and caught.value.reason == "http_4xx"
    assert "Could not resolve to a node" in str(caught.value)
