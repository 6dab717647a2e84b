"""The Mastodon adapter's parsing, on responses recorded from real instances.

Expected ids, times and counts were read off the files (``shared/real-samples/
mastodon``, see its PROVENANCE.md), times converted with ``date -u -d``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitor.sources.base import RootCache
from monitor.sources.mastodon import parse_time, status_item


def load(real_samples: Path, name: str) -> Any:
    return json.loads((real_samples / "mastodon" / name).read_text())


def test_tag_timeline_of_five_thread_starts(real_samples: Path) -> None:
    statuses = load(real_samples, "fosstodon_tag_rstats.json")
    items = [status_item(raw) for raw in statuses]
    assert all(item is not None for item in items)
    first = items[0]
    assert first is not None
    assert first.external_id == "114870142263126875"
    assert first.kind == "thread" and first.thread_id == first.external_id
    assert first.parent_id is None
    assert first.created_at == 1752779268  # 2025-07-17T19:07:48.000Z
    assert first.author == "simonpcouch@rstats.me"
    assert first.text_is_html and first.text.startswith("<p>")
    # the recorded url is https://rstats.me/@simonpcouch/...: it names the author
    assert statuses[0]["url"].startswith("https://rstats.me/@simonpcouch/")
    assert all(item.url is None for item in items if item)
    assert [item.author for item in items[1:3] if item] == [
        "useR_conf@mastodon.social",
        "zkamvar@hachyderm.io",
    ]


def test_forty_statuses_with_replies_and_edits(real_samples: Path) -> None:
    statuses = load(real_samples, "mastodon_social_tag_ichbinhanna_page1.json")
    items = [item for raw in statuses if (item := status_item(raw)) is not None]
    assert len(items) == 40
    assert sum(item.kind == "reply" for item in items) == 13
    assert sum(item.edited_at is not None for item in items) == 6
    assert len({item.author for item in items}) == 30
    newest = items[0]
    assert (newest.external_id, newest.created_at, newest.edited_at) == (
        "114856169736898681",
        1752566063,  # 2025-07-15T07:54:23.000Z
        1752566130,  # edited 2025-07-15T07:55:30.000Z
    )
    assert newest.author == "laborjournal@mstdn.science"
    assert items[1].author == "AKellerGEW"  # a local account has no @domain
    assert items[1].created_at == 1752488576  # 2025-07-14T10:22:56.515Z, floored
    reply = next(item for item in items if item.external_id == "114813432617339439")
    # its parent is not on the timeline: the thread is the parent until a root is known
    assert (reply.kind, reply.parent_id, reply.thread_id) == (
        "reply",
        "114813416259308170",
        "114813416259308170",
    )


def test_pages_follow_each_other_by_max_id(real_samples: Path) -> None:
    page1 = load(real_samples, "mastodon_social_tag_ichbinhanna_page1.json")
    page2 = load(real_samples, "mastodon_social_tag_ichbinhanna_page2_max_id.json")
    # page 2 was requested with max_id = the last id of page 1 (PROVENANCE: Link header)
    assert page1[-1]["id"] == "114630169307317488"
    ids = [int(raw["id"]) for raw in page1 + page2]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 80
    first = status_item(page2[0])
    assert first is not None
    assert (first.external_id, first.kind, first.created_at) == (
        "114626725870098652",
        "reply",
        1749065029,  # 2025-06-04T19:23:49.000Z
    )


def test_context_ancestor_is_a_thread_start(real_samples: Path) -> None:
    context = load(real_samples, "fosstodon_status_context_with_ancestors.json")
    assert context["descendants"] == []
    (ancestor,) = [status_item(raw) for raw in context["ancestors"]]
    assert ancestor is not None
    assert (ancestor.external_id, ancestor.kind, ancestor.author) == (
        "114026814291152535",
        "thread",
        "schochastics",
    )


def test_boosts_and_broken_statuses_are_not_items() -> None:
    base = {"id": "5", "created_at": "2025-07-17T19:07:48.000Z", "content": "<p>x</p>"}
    assert status_item({**base, "reblog": {"id": "4"}}) is None
    assert status_item({**base, "id": "not-a-number"}) is None
    assert status_item({**base, "created_at": "yesterday"}) is None
    item = status_item({**base, "account": None, "spoiler_text": "cw: pay"})
    assert item is not None and item.author is None and item.title == "cw: pay"


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2025-07-17T19:07:48.000Z", 1752779268),
        ("2025-07-14T10:22:56.515Z", 1752488576),
        ("2025-07-17T19:07:48+00:00", 1752779268),
        ("2025-07-17T21:07:48+02:00", 1752779268),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: object, epoch: int | None) -> None:
    assert parse_time(text) == epoch


def test_root_cache_keeps_the_most_recent() -> None:
    cache = RootCache(capacity=2)
    cache.put("a", "1", root="1")
    cache.put("a", "2", root="1")
    assert cache.get("a", "1") == "1"  # now the most recent
    cache.put("a", "3", root="1")  # evicts "2"
    assert (cache.get("a", "2"), cache.get("a", "1"), cache.get("b", "1")) == (None, "1", None)
