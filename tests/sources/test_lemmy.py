"""The Lemmy adapter's parsing, on the two bodies recorded from a real instance.

``shared/real-samples/lemmy`` (see its PROVENANCE.md) holds one 0.19 post page
(programming.dev, ``sort=Hot``, 5 posts) and a composite of a post and 5 comments
of ``comment/list``. Expected ids, times and counts were read off the files with
``jq``; times converted with ``date -u -d``. What no recording has (deleted or
removed items, links that name a user, hostile ids) is hand-made below and says so.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from monitor.config import LemmyCommunity, settings_from_mapping
from monitor.sources.lemmy import (
    EARLIEST,
    comment_item,
    names_no_user,
    of_community,
    offset_windows,
    parent_in_path,
    parse_time,
    post_item,
    view_problem,
)

BASE = "https://programming.dev"


def load(real_samples: Path, name: str) -> Any:
    return json.loads((real_samples / "lemmy" / name).read_text())


def post_page(real_samples: Path) -> Any:
    return load(real_samples, "post_list_programming-dev_sort-Hot_5items_next_page_2026-07.json")


def composite(real_samples: Path) -> Any:
    return load(
        real_samples, "COMPOSITE_post_plus_comment_list_programming-dev_5comments_2026-07.json"
    )


def test_a_recorded_post_page(real_samples: Path) -> None:
    page = post_page(real_samples)
    items = [post_item(view, base_url=BASE) for view in page["posts"]]
    assert all(item is not None for item in items) and len(items) == 5
    assert [view_problem(view, "posts") for view in page["posts"]] == [None] * 5
    assert [(i.external_id, i.created_at) for i in items if i] == [
        ("post/52879772", 1782970425),  # 2026-07-02T05:33:45.680997Z
        ("post/52878035", 1782967205),  # 04:40:05.907815Z
        ("post/52879951", 1782970913),  # 05:41:53.009148Z
        ("post/52879612", 1782970112),  # 05:28:32.192769Z
        ("post/52879822", 1782970551),  # 05:35:51.347440Z
    ]
    assert all(i.kind == "thread" and i.thread_id == i.external_id for i in items if i)
    # every creator is federated: the identity is the actor id, one per person
    assert [i.author for i in items if i] == [
        "https://feddit.org/u/HaraldvonBlauzahn",
        "https://piefed.blahaj.zone/u/LadyButterfly",
        "https://lemmy.today/u/silly_goose",
        "https://lemmy.sdf.org/u/pmjv",
        "https://feddit.org/u/Pip",
    ]
    first, second, third = items[0], items[1], items[2]
    assert first is not None and second is not None and third is not None
    assert first.title.startswith("Anybody Who Thinks Orbital Data Centers")
    assert (first.text, second.text, len(third.text)) == ("", "", 210)  # no body, "", 210 chars
    assert not any(i.deleted or i.edited_at or i.text_is_html for i in items if i)
    # the ap_ids name no user (a PieFed one names its community and title): kept as links
    assert [i.url for i in items if i] == [view["post"]["ap_id"] for view in page["posts"]]
    assert second.url == "https://piefed.blahaj.zone/c/me_irl/p/833127/me-irl"


def test_the_recorded_next_page_names_the_last_post_of_its_page(real_samples: Path) -> None:
    """0.19's keyset cursor: "P" and the last post's id in hex (as the fake sends it)."""
    page = post_page(real_samples)
    assert page["next_page"] == "P326e1ce"
    assert int("326e1ce", 16) == 52879822 == page["posts"][-1]["post"]["id"]


def test_recorded_posts_by_community(real_samples: Path) -> None:
    """The page is programming.dev's whole feed (type_=All), so its posts are of four
    communities: fuck_ai@lemmy.world has 2 of the 5, europe@feddit.org 1; none is a
    community of programming.dev itself (``local`` false everywhere)."""
    views = post_page(real_samples)["posts"]
    assert sum(of_community(v, name="fuck_ai", host="lemmy.world") for v in views) == 2
    assert sum(of_community(v, name="Europe", host="FEDDIT.org") for v in views) == 1
    assert sum(of_community(v, name="europe", host=None) for v in views) == 0
    assert sum(of_community(v, name="fuck_ai", host="feddit.org") for v in views) == 0
    odd = {**views[0], "community": {**views[0]["community"], "actor_id": "https://[x/c/fuck_ai"}}
    assert not of_community(odd, name="fuck_ai", host="lemmy.world")  # hand-made: no URL


def test_recorded_comments_and_their_parents(real_samples: Path) -> None:
    body = composite(real_samples)
    views = body["comments"]
    items = [comment_item(view, base_url=BASE) for view in views]
    assert all(item is not None for item in items) and len(items) == 5
    got = [(i.external_id, i.created_at, i.parent_id) for i in items if i]
    assert got == [
        # 06:15:35Z, path 0.24660381.24660858.24661071.24672634
        ("comment/24672634", 1782972935, "comment/24661071"),
        # 06:14:27Z, path 0.24672620: answers the post
        ("comment/24672620", 1782972867, "post/52823776"),
        ("comment/24672605", 1782972790, "comment/24659641"),  # 06:13:10Z, 0.24659641.24672605
        # 06:11:34Z, path 0.24660381.24660858.24660912.24661514.24672589
        ("comment/24672589", 1782972694, "comment/24661514"),
        # 06:09:06Z, path 0.24660381.24660858.24661463.24672566
        ("comment/24672566", 1782972546, "comment/24661463"),
    ]
    # newest first, as sort=New lists them (PROVENANCE infers sort=New&limit=5)
    assert [t for _, t, _ in got] == sorted((t for _, t, _ in got), reverse=True)
    assert {i.thread_id for i in items if i} == {"post/52823776"}
    assert all(i.kind == "reply" and not i.deleted for i in items if i)
    # 4 by one person of lemmy.today, 1 by one of lemmy.world
    authors = [i.author for i in items if i]
    assert authors.count("https://lemmy.today/u/Tollana1234567") == 4
    assert authors.count("https://lemmy.world/u/WanderWisley") == 1
    assert [len(i.text) for i in items if i] == [274, 106, 110, 215, 163]
    # one was edited: updated 2026-07-02T06:12:22.050031Z
    assert [i.edited_at for i in items if i] == [None, None, None, 1782972742, None]
    assert [i.url for i in items if i] == [v["comment"]["ap_id"] for v in views]


def test_the_recorded_post_of_the_comments(real_samples: Path) -> None:
    post = post_item(composite(real_samples)["post_view"], base_url=BASE)
    assert post is not None
    assert (post.external_id, post.created_at) == ("post/52823776", 1782870807)  # 07-01 01:53:27Z
    assert post.title == "Reddit will require you to log in to use old.reddit.com"
    assert len(post.text) == 769
    assert post.author == "https://lemmy.ca/u/breakfastmtn"
    assert post.url == "https://lemmy.ca/post/67172855"


def test_no_recorded_link_is_an_actor_id(real_samples: Path) -> None:
    views = [*post_page(real_samples)["posts"], composite(real_samples)["post_view"]]
    posts = [post_item(v, base_url=BASE) for v in views]
    comments = [comment_item(v, base_url=BASE) for v in composite(real_samples)["comments"]]
    links = [i.url for i in [*posts, *comments] if i is not None]
    assert len(links) == 11 and all(link and "/u/" not in link for link in links)


# -- hand-made: what no recording has ------------------------------------------------


def view(**post: Any) -> dict[str, Any]:
    """Hand-made: a PostView with the recorded field names and only what the adapter reads."""
    return {
        "post": {
            "id": 7,
            "name": "Pay cut",
            "body": "Again",
            "published": "2026-07-02T05:33:45.680997Z",
            "ap_id": "https://lemmy.world/post/99",
            **post,
        },
        "creator": {"name": "alice", "actor_id": "https://lemmy.world/u/alice"},
        "community": {"name": "gig", "actor_id": "https://lemmy.world/c/gig", "local": True},
    }


def comment_view(**comment: Any) -> dict[str, Any]:
    """Hand-made: a CommentView as ``view``."""
    return {
        "comment": {
            "id": 70,
            "post_id": 7,
            "content": "Same here",
            "published": "2026-07-02T05:40:00Z",
            "ap_id": "https://lemmy.world/comment/700",
            "path": "0.70",
            **comment,
        },
        "creator": {"name": "bob", "actor_id": "https://beehaw.org/u/bob"},
    }


@pytest.mark.parametrize("flag", ["deleted", "removed"])
def test_deleted_and_removed_items_count_without_author_or_text(flag: str) -> None:
    post = post_item(view(**{flag: True}), base_url=BASE)
    assert post is not None
    assert (post.deleted, post.author, post.title, post.text) == (True, None, "", "")
    comment = comment_item(comment_view(**{flag: True}), base_url=BASE)
    assert comment is not None
    assert (comment.deleted, comment.author, comment.text) == (True, None, "")
    assert comment.external_id == "comment/70"  # still an item: it is counted


def test_the_same_name_on_two_instances_is_two_people() -> None:
    here = view()
    there = {**view(), "creator": {"name": "alice", "actor_id": "https://beehaw.org/u/alice"}}
    authors = {
        (item.author if item else None)
        for item in map(lambda v: post_item(v, base_url=BASE), (here, there))
    }
    assert authors == {"https://lemmy.world/u/alice", "https://beehaw.org/u/alice"}


@pytest.mark.parametrize(
    ("ap_id", "kept"),
    [
        ("https://lemmy.world/post/99", True),
        ("https://piefed.social/c/gig/p/5/pay-cut", True),
        ("https://mastodon.social/users/alice/statuses/1", False),  # Mastodon's
        ("https://mastodon.social/@alice/1", False),
        ("https://kbin.example/u/alice/t/1", False),
        ("https://tilde.example/~alice/1", False),
        ("https://alice.example/post/1", False),  # a host named for the creator
        ("https://blog.example/2026/ALICE-writes", False),  # the name, in any case
        ("https://bad%2Fexample/%75sers/x", False),  # an escaped /users/ is still one
        ("ftp://lemmy.world/post/99", False),
        ("http://[lemmy.world/post/99", False),  # urlsplit refuses it
        ("not a link", False),
    ],
)
def test_a_link_is_kept_only_if_it_names_no_user(ap_id: str, kept: bool) -> None:
    creator = {"name": "alice", "actor_id": "https://lemmy.world/u/alice"}
    assert names_no_user(ap_id, creator) is kept
    item = post_item(view(ap_id=ap_id), base_url=BASE)
    assert item is not None
    assert item.url == (ap_id if kept else f"{BASE}/post/7")  # else the instance's own page


def test_a_creator_named_only_in_the_actor_id() -> None:
    """Other software's actor ids can end in another form of the name than ``name``."""
    creator = {"name": "Alice", "actor_id": "https://social.example/users/alice_w"}
    assert not names_no_user("https://social.example/notes/alice_w-1", creator)


@pytest.mark.parametrize(
    ("path", "parent"),
    [
        ("0.70", None),
        ("0.5.70", 5),
        ("0.1.2.3.70", 3),
        ("0.5.71", None),  # not this comment's path
        ("1.5.70", None),
        ("0.x.70", None),
        ("0.4294967296.70", None),  # no Lemmy id
        ("0.\u00b2.70", None),  # a digit to str.isdigit, not to int()
        ("0." + "9" * 5000 + ".70", None),  # more digits than int() reads
        ("", None),
        (None, None),
    ],
)
def test_the_parent_is_the_comment_before_it_in_its_path(path: object, parent: int | None) -> None:
    assert parent_in_path(path, 70) == parent


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        ("posts", {"id": None}, "missing_field"),
        ("posts", {"id": True}, "bad_id"),
        ("posts", {"id": 0}, "bad_id"),
        ("posts", {"id": 2**31}, "bad_id"),  # Lemmy ids are PostgreSQL integers
        ("posts", {"id": "7"}, "bad_id"),
        ("posts", {"id": 7.0}, "bad_id"),
        ("posts", {"published": None}, "missing_field"),
        ("posts", {"published": "yesterday"}, "bad_time"),
        ("posts", {"published": 1782970425}, "bad_time"),
        ("posts", {"id": 2**31 - 1}, None),
        ("comments", {"post_id": None}, "missing_field"),
        ("comments", {"post_id": -1}, "bad_id"),
        ("comments", {}, None),
    ],
)
def test_what_cannot_become_an_item(kind: str, fields: dict[str, Any], problem: str | None) -> None:
    raw = view(**fields) if kind == "posts" else comment_view(**fields)
    assert view_problem(raw, "posts" if kind == "posts" else "comments") == problem
    parse = post_item if kind == "posts" else comment_item
    assert (parse(raw, base_url=BASE) is None) is (problem is not None)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-07-02T05:33:45.680997Z", 1782970425),
        ("2026-07-02T05:33:45.680997", 1782970425),  # 0.18: no Z, UTC all the same
        ("2026-07-02T07:33:45+02:00", 1782970425),
        ("2019-01-01T00:00:00Z", EARLIEST),
        ("2026-07-02", 1782950400),
        ("", None),
        ("yesterday", None),
        (1782970425, None),
        (None, None),
    ],
)
def test_parse_time(text: object, epoch: int | None) -> None:
    assert parse_time(text) == epoch


def test_offset_pages_overlap_the_page_before() -> None:
    """Lemmy's offset is ``limit * (page - 1)``: the windows, worked out by hand."""
    windows = list(itertools.islice(offset_windows(50), 10))
    assert windows == [
        (1, 50),  # items 0-49
        (2, 49),  # 49-97: 1 item again
        (3, 48),  # 96-143: 2
        (4, 47),  # 141-187: 3
        (5, 46),  # 184-229: 4
        (6, 45),  # 225-269: 5
        (7, 44),  # 264-307: 6
        (7, 50),  # 300-349: 8
        (8, 49),  # 343-391: 7
        (9, 48),  # 384-431: 8
    ]
    spans = [((page - 1) * limit, page * limit) for page, limit in windows]
    assert all(
        start < end_before < end for (_, end_before), (start, end) in itertools.pairwise(spans)
    )
    for size in (16, 20, 37):  # smaller pages (tests use them) overlap too
        small = [((p - 1) * n, p * n) for p, n in itertools.islice(offset_windows(size), 30)]
        assert all(a < e0 < e for (_, e0), (a, e) in itertools.pairwise(small))
    with pytest.raises(ValueError, match="16 items"):
        next(offset_windows(15))


@pytest.mark.parametrize(
    "community", ["technology", "technology@lemmy.world", "Gig_2@lemmy.example:8536"]
)
def test_the_community_is_a_name_or_a_name_at_its_instance(community: str) -> None:
    entry = {
        "id": "l",
        "source": "lemmy",
        "base_url": "https://lemmy.world",
        "community": community,
    }
    (parsed,) = settings_from_mapping({"communities": [entry]}).communities
    assert isinstance(parsed, LemmyCommunity) and parsed.community == community
