"""The Lemmy adapter against a fake instance over real sockets on 127.0.0.1.

The recorded bodies are thin (one post page, five comments: see ``test_lemmy.py``),
so the fake (``monitor/fakeforum/lemmy.py``, built on Lemmy's own listing code) is
the proof of paging, cursors, deleted items and versions. Every item is made by the
test, so expected ids, counts and request numbers follow from what each test adds,
from pages of 50 and from the offset windows of ``offset_windows`` (items 0-49,
49-97, 96-143, 141-187, ...).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from monitor.config import Settings, settings_from_mapping
from monitor.errors import HTTPStatusError, MalformedResponse
from monitor.fakeforum.lemmy import FakeLemmy, Version
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Fault, Request, Router
from monitor.sources.base import Batch
from monitor.sources.lemmy import Lemmy, UnknownCommunity
from monitor.store.models import Post
from monitor.telemetry import Telemetry
from tests.sources.polling import SourcePoller, fake_settings
from tests.support import FAULT_HTTP, FAULTS, running_service, served, service_config, stored_posts

NOW = 1_780_000_000
DAY = 86400
API = "/api/v3"


class Instance:
    """A fake instance with one community ``gig`` of its own, served on 127.0.0.1."""

    def __init__(self, version: Version = "0.19") -> None:
        self.fake = FakeLemmy(version=version)
        self.gig = self.fake.add_community("gig")
        router = Router()
        self.fake.register(router)
        self.server = FakeForumServer(router)

    def settings(self, community: str = "gig", **extra: Any) -> Settings:
        lemmy = {"id": "lemmy", "source": "lemmy", "base_url": self.server.base_url}
        return fake_settings({**lemmy, "community": community, **extra})

    def add_round(self, count: int, *, start: int, step: int = 60) -> list[str]:
        """``count`` posts ``step`` seconds apart, each with one comment 30 s after it;
        the external ids, posts then comments."""
        posts = [
            self.fake.add_post(self.gig, published=start + n * step, author=f"a{n % 5}")
            for n in range(count)
        ]
        comments = [
            self.fake.add_comment(post, published=post.published + 30, author=f"b{n % 3}")
            for n, post in enumerate(posts)
        ]
        return [f"post/{p.id}" for p in posts] + [f"comment/{c.id}" for c in comments]

    def requests(self, endpoint: str) -> list[Request]:
        return self.server.requests_to(f"{API}/{endpoint}/list")


@pytest.fixture
def instance() -> Iterator[Instance]:
    made = Instance()
    with made.server:
        yield made


def poller_for(instance: Instance, telemetry: Telemetry, **extra: Any) -> SourcePoller:
    return SourcePoller(Lemmy, telemetry, instance.settings(**extra), now=NOW)


@pytest.fixture
async def poller(instance: Instance, telemetry: Telemetry) -> Any:
    async with poller_for(instance, telemetry) as polling:
        yield polling


def ids(batch: Batch) -> set[str]:
    return {e.item.external_id for e in batch.envelopes}


# -- the fake answers as Lemmy does -----------------------------------------------------


def test_fake_renders_the_recorded_shape(real_samples: Path) -> None:
    folder = real_samples / "lemmy"
    page = json.loads(next(folder.glob("post_list_*.json")).read_text())
    detail = json.loads(next(folder.glob("COMPOSITE_*.json")).read_text())
    fake = FakeLemmy()
    post = fake.add_post(fake.add_community("gig"), published=NOW, body=None)
    comment = fake.add_comment(post, published=NOW + 5)
    for rendered, recorded in (
        (fake.render_post(post), page["posts"][0]),
        (fake.render_comment(comment), detail["comments"][0]),
    ):
        assert set(rendered) <= set(recorded)
        for part in ("post", "comment", "creator", "community", "counts"):
            if part in rendered:
                assert set(rendered[part]) <= set(recorded[part]), part
    # 0.19 timestamps: microseconds and Z, 27 characters, as recorded
    assert len(page["posts"][0]["post"]["published"]) == 27
    assert fake.render_post(post)["post"]["published"] == "2026-05-28T20:26:40.000000Z"


async def test_fake_lists_like_lemmy() -> None:
    fake = FakeLemmy()
    gig = fake.add_community("gig")
    other = fake.add_community("gig", host="other.example")
    posts = [fake.add_post(gig, published=NOW - 600 + n) for n in range(60)]
    pinned = fake.add_post(gig, published=NOW - 5 * DAY, featured=True)
    hidden = [fake.add_post(gig, published=NOW - 10, nsfw=True), *posts[:2]]
    fake.delete(posts[0])
    fake.delete(posts[1], removed=True)
    gone = fake.add_comment(posts[5], published=NOW - 30, content="secret")
    fake.delete(gone)
    fake.add_post(other, published=NOW)
    with served(fake) as server:
        async with httpx.AsyncClient(base_url=server.base_url + API) as http:

            async def listed(endpoint: str, **params: Any) -> Any:
                query = {"community_name": "gig", "sort": "New", **params}
                return (await http.get(f"/{endpoint}/list", params=query)).json()

            first = await listed("post", limit=50)
            numbers = [view["post"]["id"] for view in first["posts"]]
            # pinned first, then the 58 live posts newest first (nsfw, deleted, removed hidden)
            assert numbers == [pinned.id] + [p.id for p in posts[::-1][:49]]
            assert first["next_page"] == f"P{numbers[-1]:x}"
            rest = await listed("post", limit=50, page_cursor=first["next_page"])
            assert [v["post"]["id"] for v in rest["posts"]] == [p.id for p in posts[::-1][49:58]]
            by_offset = await listed("post", limit=50, page=2)
            assert by_offset["posts"] == rest["posts"]
            with_nsfw = await listed("post", limit=50, show_nsfw="true")
            assert with_nsfw["posts"][1]["post"]["id"] == hidden[0].id
            federated = await listed("post", community_name="gig@other.example")
            assert len(federated["posts"]) == 1  # limit 10 by default: the one post
            assert (await http.get("/post/list", params={"limit": 51})).status_code == 400
            unknown = await http.get("/post/list", params={"community_name": "nope"})
            assert (unknown.status_code, unknown.json()) == (
                400,
                {"error": "couldnt_find_community"},
            )
            comments = await listed("comment", limit=50)
            (blank,) = comments["comments"]
            assert (blank["comment"]["deleted"], blank["comment"]["content"]) == (True, "")


@pytest.mark.parametrize("version", ["0.18", "1.0"])
async def test_fake_versions_page_as_theirs(version: Version) -> None:
    fake = FakeLemmy(version=version)
    gig = fake.add_community("gig")
    posts = [fake.add_post(gig, published=NOW - 6000 + n) for n in range(600)]
    for n in range(60):
        fake.add_comment(posts[n], published=NOW - 3000 + n)
    with served(fake) as server:
        async with httpx.AsyncClient(base_url=server.base_url + API) as http:
            query = {"community_name": "gig", "sort": "New", "limit": 50}
            page2 = (await http.get("/post/list", params={**query, "page": 2})).json()
            page11 = (await http.get("/post/list", params={**query, "page": 11})).json()
            page10 = (await http.get("/post/list", params={**query, "page": 10})).json()
            comments2 = (await http.get("/comment/list", params={**query, "page": 2})).json()
            comments1 = (await http.get("/comment/list", params=query)).json()
            nope = await http.get("/comment/list", params={**query, "community_name": "x"})
    assert [v["post"]["id"] for v in page2["posts"]] == [p.id for p in posts[::-1][50:100]]
    if version == "1.0":
        assert page2["next_page"] is None
        assert page11 == page10  # 1.0 pages posts no further than page 10
        assert comments2 == comments1  # and its v3 comment list ignores page
        assert nope.status_code == 400
    else:
        assert "next_page" not in page2
        assert page11 != page10
        assert len(comments2["comments"]) == 10 and comments2 != comments1
        assert not page2["posts"][0]["post"]["published"].endswith("Z")
        assert len(nope.json()["comments"]) == 50  # an unknown community: everything


# -- polls ------------------------------------------------------------------------------


async def test_first_poll_reaches_back_history_days(
    instance: Instance, poller: SourcePoller
) -> None:
    fake, gig = instance.fake, instance.gig
    old = fake.add_post(gig, published=NOW - 31 * DAY)
    inside = fake.add_post(gig, published=NOW - 29 * DAY)
    fresh = fake.add_post(gig, published=NOW - DAY)
    fake.add_comment(old, published=NOW - 31 * DAY + 60)
    reply = fake.add_comment(inside, published=NOW - 29 * DAY + 60)
    late = fake.add_comment(old, published=NOW - DAY + 60)  # on an old post, but new itself
    batch = await poller.poll()
    assert ids(batch) == {
        f"post/{inside.id}",
        f"post/{fresh.id}",
        f"comment/{reply.id}",
        f"comment/{late.id}",
    }
    assert (batch.requests, batch.complete, batch.covered_from) == (2, True, None)
    # each list: its newest second, and what lies in the 15 minutes up to it
    assert poller.cursor == {
        "posts": {"newest": NOW - DAY, "seen": {f"post/{fresh.id}": NOW - DAY}},
        "comments": {"newest": NOW - DAY + 60, "seen": {f"comment/{late.id}": NOW - DAY + 60}},
    }


async def test_cycles_return_exactly_the_new_items_at_the_request_bound(
    instance: Instance, poller: SourcePoller
) -> None:
    """Idle: 1 request per list. K new items: the first item older than the floor lies
    at index K + o of each list, o being the previous round's items within 15 minutes of
    its newest (60 s apart: min(its size, 16)); posts page by cursor (pages of 50),
    comments by offset (windows ending at 50, 98, 144, 188, 230, 270, 308, 350, 392, 432)."""
    first = instance.add_round(5, start=NOW - 10 * DAY)
    assert ids(await poller.poll()) == set(first)
    expected = {
        # K: (post requests, comment requests)
        1: (1, 1),  # o = 5: index 6, but the lists hold 6 items: one short page each
        39: (1, 1),  # o = 1: index 40 (an item of the first round) on page 1
        49: (2, 2),  # o = 16: index 65: posts page 2 (50-99); comments window 2 (49-97)
        50: (2, 2),  # index 66
        51: (2, 2),  # index 67
        120: (3, 3),  # index 136: posts page 3 (100-149); comments window 3 (96-143)
        150: (4, 4),  # index 166: posts page 4 (150-199); comments window 4 (141-187)
        400: (9, 10),  # index 416: posts page 9 (400-449); comments window 10 (384-431)
    }
    for day, (count, (posts, comments)) in enumerate(expected.items()):
        made = instance.add_round(count, start=NOW - (9 - day) * DAY)
        before = len(instance.requests("post")), len(instance.requests("comment"))
        batch = await poller.poll()
        assert ids(batch) == set(made) and len(batch.envelopes) == 2 * count
        assert (batch.requests, batch.complete) == (posts + comments, True)
        assert len(instance.requests("post")) - before[0] == posts
        assert posts <= -(-count // 50) + 1  # ceil(K / 50) + 1
        # offset pages overlap, so past K = 349 they hold 48 new items a page or more
        assert comments <= -(-count // (50 if count < 350 else 48)) + 1
        idle = await poller.poll()
        assert (ids(idle), idle.requests) == (set(), 2)
    walk = instance.requests("comment")[-11:-7]  # the 400-round's first comment pages
    assert [(r.query.get("page"), r.query["limit"]) for r in walk] == [
        (None, ["50"]),
        (["2"], ["49"]),
        (["3"], ["48"]),
        (["4"], ["47"]),
    ]
    cursors = [r.query.get("page_cursor") for r in instance.requests("post")[-10:-1]]
    assert cursors[0] is None and all(c and c[0].startswith("P") for c in cursors[1:])


async def test_a_walk_over_its_page_bound_says_so_and_moves_on(
    instance: Instance, poller: SourcePoller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Lemmy, "max_pages", 2)
    start = NOW - DAY
    made = instance.add_round(150, start=start)
    posts, comments = made[:150], made[150:]
    batch = await poller.poll()
    # posts: 2 cursor pages, the newest 100 (n = 50..149); comments: 2 offset windows,
    # items 0-97, the newest 98 (n = 52..149)
    assert ids(batch) == set(posts[50:]) | set(comments[52:])
    assert (batch.requests, batch.complete) == (4, False)
    # vouched from the later start: the second after comment n = 52 (start + 52*60 + 30)
    assert batch.covered_from == start + 52 * 60 + 30 + 1
    later = instance.add_round(3, start=NOW - 600)
    again = await poller.poll()
    assert ids(again) == set(later) and again.complete  # moved on: n < 50 is never read


async def test_an_offset_page_that_may_have_hidden_an_item_is_not_vouched_for(
    telemetry: Telemetry,
) -> None:
    """Lemmy 1.0's v3 post list pages by offset only. Two posts of page 1 deleted before
    page 2 pull every post up by two: the post that was 51st (index 50) moves onto page 1's
    window, already read, and page 2 (offset 49) shares no post with page 1."""
    instance = Instance("1.0")
    with instance.server:
        async with poller_for(instance, telemetry) as polling:
            fake = instance.fake
            fake.add_post(instance.gig, published=NOW - 5 * DAY)
            await polling.poll()
            posts = [fake.add_post(instance.gig, published=NOW - 3600 + n * 30) for n in range(60)]
            newest_first = posts[::-1]

            def delete_two(request: Request) -> None:
                if request.path.endswith("/post/list") and "page" not in request.query:
                    fake.delete(newest_first[0])
                    fake.delete(newest_first[1])

            fake.after_request = delete_two
            batch = await polling.poll()
            fake.after_request = None
            skipped = newest_first[50]
            # page 1: indexes 0-49 (the two deleted ones included); page 2: 51-59 and the
            # old post, 10 items, short: the listing's end
            assert ids(batch) == {f"post/{p.id}" for p in newest_first if p is not skipped}
            assert batch.requests == 2 + 1  # two post pages, one comment page
            assert not batch.complete
            # vouched only above the boundary: from the second after index 49
            assert batch.covered_from == int(newest_first[49].published) + 1
            assert skipped.published < batch.covered_from


async def test_new_posts_between_offset_pages_repeat_and_lose_nothing(
    telemetry: Telemetry,
) -> None:
    instance = Instance("1.0")
    with instance.server:
        async with poller_for(instance, telemetry) as polling:
            fake = instance.fake
            fake.add_post(instance.gig, published=NOW - 5 * DAY)
            await polling.poll()
            posts = [fake.add_post(instance.gig, published=NOW - 3600 + n * 30) for n in range(60)]
            arrivals: list[Any] = []

            def three_arrive(request: Request) -> None:
                if request.path.endswith("/post/list") and "page" not in request.query:
                    arrivals.extend(
                        fake.add_post(instance.gig, published=NOW - 60 + n) for n in range(3)
                    )

            fake.after_request = three_arrive
            batch = await polling.poll()
            fake.after_request = None
            # page 2 (offset 49) starts at what was index 46: 4 posts again, dropped by id
            assert ids(batch) == {f"post/{p.id}" for p in posts}
            assert len(batch.envelopes) == 60 and batch.complete
            assert ids(await polling.poll()) == {f"post/{p.id}" for p in arrivals}


async def test_a_list_the_instance_does_not_page_is_cut_short(telemetry: Telemetry) -> None:
    """Lemmy 1.0's v3 comment list answers its first page whatever ``page`` says."""
    instance = Instance("1.0")
    with instance.server:
        async with poller_for(instance, telemetry) as polling:
            post = instance.fake.add_post(instance.gig, published=NOW - 2 * DAY)
            await polling.poll()
            made = [
                instance.fake.add_comment(post, published=NOW - 7000 + n * 60) for n in range(70)
            ]
            batch = await polling.poll()
            newest_50 = made[20:]
            assert ids(batch) == {f"comment/{c.id}" for c in newest_50}
            # posts: 1 page; comments: page 1, then page 2 (limit 49), the same 49 again
            assert (batch.requests, batch.complete) == (1 + 2, False)
            assert batch.covered_from == int(made[20].published) + 1


async def test_lemmy_0_18_pages_by_offset_with_its_own_timestamps(telemetry: Telemetry) -> None:
    instance = Instance("0.18")
    with instance.server:
        async with poller_for(instance, telemetry) as polling:
            made = instance.add_round(60, start=NOW - DAY)
            batch = await polling.poll()
            assert ids(batch) == set(made)
            created = {e.item.external_id: e.item.created_at for e in batch.envelopes}
            assert created[made[0]] == NOW - DAY  # a time without Z is UTC
            # each list: page 1 (0-49), then offset window 2 (49-97) holding 11, short
            assert (batch.requests, batch.complete) == (2 + 2, True)
            assert [r.query.get("page") for r in instance.requests("post")] == [None, ["2"]]


async def test_an_instance_that_lists_other_communities_does_not_know_this_one(
    telemetry: Telemetry,
) -> None:
    """Up to 0.18.0 Lemmy ignored an unknown community_name and listed everything."""
    instance = Instance("0.18")
    with instance.server:
        other = instance.fake.add_community("cooking")
        instance.fake.add_post(other, published=NOW - 60)
        async with poller_for(instance, telemetry, community="gigs") as polling:
            with pytest.raises(UnknownCommunity, match="gigs") as failure:
                await polling.poll()
            assert (failure.value.reason, polling.cursor) == ("http_4xx", {})


async def test_an_unknown_community_is_a_4xx(instance: Instance, telemetry: Telemetry) -> None:
    async with poller_for(instance, telemetry, community="gig@elsewhere.example") as polling:
        with pytest.raises(HTTPStatusError) as failure:
            await polling.poll()
        assert (failure.value.status, failure.value.reason) == (400, "http_4xx")


async def test_a_federated_community_and_the_items_of_others(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``name@host`` is the community of that host, not the local one of the same name;
    an item of another community on its page (hand-made: the fake lists none) is skipped."""
    instance = Instance()
    with instance.server:
        fake = instance.fake
        remote = fake.add_community("gig", host="lemmy.world")
        theirs = fake.add_post(remote, published=NOW - 100, author="alice", host="lemmy.world")
        fake.add_post(instance.gig, published=NOW - 50)
        stray = fake.add_post(remote, published=NOW - 40)
        polling = poller_for(instance, telemetry, community="gig@lemmy.world")
        original = fake.render_post

        def elsewhere(post: Any) -> dict[str, Any]:
            rendered = original(post)
            if post is stray:
                rendered["community"] = {**rendered["community"], "name": "cooking"}
            return rendered

        monkeypatch.setattr(fake, "render_post", elsewhere)
        async with polling:
            batch = await polling.poll()
            assert ids(batch) == {f"post/{theirs.id}"}
            assert batch.envelopes[0].item.author == "https://lemmy.world/u/alice"


async def test_a_pinned_post_neither_stops_a_walk_nor_comes_back(
    instance: Instance, poller: SourcePoller
) -> None:
    fake, gig = instance.fake, instance.gig
    pinned = fake.add_post(gig, published=NOW - 20 * DAY, featured=True)
    older = fake.add_post(gig, published=NOW - 10 * DAY)
    assert ids(await poller.poll()) == {f"post/{pinned.id}", f"post/{older.id}"}
    made = [fake.add_post(gig, published=NOW - 7200 + n * 60) for n in range(60)]
    batch = await poller.poll()
    # page 1: the pinned post, older than the floor (10 days ago less 15 minutes) but
    # listed first, then the newest 49; page 2: the other 11 and ``older``, short
    assert ids(batch) == {f"post/{p.id}" for p in made}
    assert (batch.requests, batch.complete) == (2 + 1, True)


async def test_an_item_that_federates_in_late_is_caught_within_the_overlap(
    instance: Instance, poller: SourcePoller
) -> None:
    """Lemmy lists a federated item by when it was published on its own instance, so
    one arriving late lands below what a poll has read already."""
    fake, gig = instance.fake, instance.gig
    newest = fake.add_post(gig, published=NOW - 3600)
    await poller.poll()
    late = fake.add_post(gig, published=NOW - 3600 - 600, host="far.example")  # 10 min
    too_late = fake.add_post(gig, published=NOW - 3600 - 1200, host="far.example")  # 20 min
    assert late.id > newest.id and too_late.id > late.id  # they arrived after it
    assert ids(await poller.poll()) == {f"post/{late.id}"}  # the 20-minute one: missed
    assert ids(await poller.poll()) == set()


async def test_deleted_and_nsfw_items(instance: Instance, poller: SourcePoller) -> None:
    fake, gig = instance.fake, instance.gig
    post = fake.add_post(gig, published=NOW - 600, nsfw=True, title="Pay (nsfw)")
    kept = fake.add_comment(post, published=NOW - 500, content="Fine")
    deleted = fake.add_comment(post, published=NOW - 400, content="Regret", author="carol")
    removed = fake.add_comment(post, published=NOW - 300, content="Spam", author="dave")
    fake.delete(deleted)
    fake.delete(removed, removed=True)
    gone = fake.add_post(gig, published=NOW - 200)  # deleted before any poll saw it
    fake.delete(gone)
    items = {e.item.external_id: e.item for e in (await poller.poll()).envelopes}
    # the NSFW post is read (show_nsfw=true); Lemmy lists no deleted post to anyone but
    # its author, so ``gone`` is not there; deleted and removed comments are, blanked
    assert set(items) == {f"post/{post.id}", *(f"comment/{c.id}" for c in (kept, deleted, removed))}
    for comment in (deleted, removed):
        item = items[f"comment/{comment.id}"]
        assert (item.deleted, item.author, item.text) == (True, None, "")
    assert items[f"comment/{kept.id}"].author == "https://fake.lemmy/u/member"
    assert instance.requests("post")[0].query["show_nsfw"] == ["true"]


async def test_a_body_without_its_list_is_malformed(telemetry: Telemetry) -> None:
    router = Router()
    router.add(f"{API}/post/list", lambda _: FakeResponse.json({"error": "couldnt_get_posts"}))
    with FakeForumServer(router) as server:
        settings = settings_from_mapping(
            {
                "communities": [
                    {"id": "l", "source": "lemmy", "base_url": server.base_url, "community": "g"}
                ]
            }
        )
        async with SourcePoller(Lemmy, telemetry, settings, now=NOW) as polling:
            with pytest.raises(MalformedResponse, match="without posts"):
                await polling.poll()


def test_the_polite_default_rate(instance: Instance) -> None:
    """Lemmy allows 180 reads a minute per IP by default: 30 here, unless configured."""
    settings = instance.settings()
    tuned = settings.model_copy(
        update={"http": settings.http.model_copy(update={"rate_per_minute": {"a.example": 5.0}})}
    )
    client: Any = None
    source = Lemmy(tuned.communities[0], settings=tuned, client=client)
    assert (source.rate_for("lemmy.world"), source.rate_for("a.example")) == (30.0, 5.0)


# -- through the whole service ------------------------------------------------------------


def service_settings(instance: Instance, tmp_path: Path, community: str = "gig") -> Settings:
    entry = {"id": "lemmy", "source": "lemmy", "base_url": instance.server.base_url}
    data = service_config(tmp_path, [{**entry, "community": community}], **FAULT_HTTP)
    return settings_from_mapping(data)


async def test_no_author_name_or_actor_id_reaches_the_store(
    instance: Instance, tmp_path: Path
) -> None:
    now = int(time.time())
    fake = instance.fake
    post = fake.add_post(instance.gig, published=now - 900, author="alice", host="lemmy.world")
    fake.add_comment(post, published=now - 600, author="alice", host="beehaw.org")
    fake.add_comment(post, published=now - 500, author="alice", host="lemmy.world")
    toot = fake.add_comment(
        post,
        published=now - 400,
        author="bob",
        host="mastodon.example",
        ap_id="https://mastodon.example/users/bob/statuses/1",
    )
    async with running_service(service_settings(instance, tmp_path)) as service:
        (polled,) = await service.poll_all()
        assert (polled.outcome, polled.new_items) == ("ok", 4)
        assert service.engine is not None
        with Session(service.engine) as session:
            rows = {p.external_id: p for p in session.exec(select(Post)).all()}
        # alice of lemmy.world twice, alice of beehaw.org once: two people, not one
        assert len({rows[k].author_id for k in rows}) == 3  # the two alices and bob
        assert rows[f"comment/{toot.id}"].url == f"{instance.server.base_url}/comment/{toot.id}"
    with sqlite3.connect(tmp_path / "store.db") as db:
        dump = "\n".join(db.iterdump())
    assert dump.count('INSERT INTO "posts"') == 4
    assert "alice" not in dump and "bob" not in dump and "/u/" not in dump


@pytest.mark.parametrize(("fault", "reason"), FAULTS, ids=[r for _, r in FAULTS])
async def test_every_fault_is_counted_then_nothing_lost_or_duplicated(
    instance: Instance, tmp_path: Path, fault: Fault, reason: str
) -> None:
    now = int(time.time())
    first = instance.add_round(3, start=now - 10 * 3600)
    async with running_service(service_settings(instance, tmp_path)) as service:
        (ok,) = await service.poll_all()
        assert (ok.outcome, ok.new_items) == ("ok", 6)
        later = instance.add_round(4, start=now - 5 * 3600)
        instance.server.inject(replace(fault, path_prefix=API))
        (failed,) = await service.poll_all()
        assert failed.outcome == reason
        labels = {"community": "lemmy", "source": "lemmy", "reason": reason}
        assert service.registry.get_sample_value("forum_monitor_poll_failures_total", labels) == 1
        if reason == "rate_limited":
            await asyncio.sleep(3.1)  # the server asked for 3 s; a poll before is deferred
        (recovered,) = await service.poll_all()
        assert (recovered.outcome, recovered.new_items) == ("ok", 8)
        assert service.engine is not None
        # 3 + 4 posts with a comment each
        assert stored_posts(service.engine, "lemmy") == (len(first + later),) * 2 == (14, 14)
