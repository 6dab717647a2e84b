"""One bad item never blocks or blinds a community, on SQLite and on PostgreSQL.

Each case serves, on a fake forum on 127.0.0.1, five good items and one
poisoned one: dated year 9999, a time that is NaN, 1e400 or 1e20 on the wire,
an unpaired surrogate in a name and a title, NUL bytes, an id longer than the
store's column, a link longer than 2,048 characters, an id from the future. The
service polls it, the forum gets three more good items, and the service polls
again. Every good item must be stored once, both polls must say "ok", an item
that cannot be normalized must be counted in
``forum_monitor_items_rejected_total`` under its reason (once, however many
polls see it), and one that can be made safe must be stored. Bodies are kept
here, so NUL bytes reach PostgreSQL's text columns if nothing removes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from monitor.config import settings_from_mapping
from monitor.fakeforum.discourse import FakeDiscourse, iso
from monitor.fakeforum.feeds import FakeFeeds
from monitor.fakeforum.github import FakeGitHub
from monitor.fakeforum.hackernews import FakeHackerNews
from monitor.fakeforum.lemmy import FakeLemmy
from monitor.fakeforum.mastodon import FakeMastodon
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.fakeforum.stackexchange import FakeStackExchange
from monitor.http import MAX_SERVER_WAIT
from monitor.ingest import ensure_community
from monitor.service import Service
from monitor.sources import stackexchange
from monitor.store.models import PollRun, PollState, Post
from tests.support import service_config, stored_posts

NOW = int(time.time())
HOUR = 3600
YEAR_9999 = 253_402_300_799
SURROGATE = "name\ud800x"
"""``json.dumps`` writes it as the escape ``\\ud800``, which decodes to a lone surrogate."""
NUL_TITLE = "pay\x00cut"
LONG_ID_TAIL = "z" * 300
LONG_PATH = "/a" * 1500
MARKERS = {b'"__NaN__"': b"NaN", b'"__1e400__"': b"1e400"}
"""Quoted markers the server rewrites into JSON literals ``json.dumps`` never writes."""


def unquote_markers(body: bytes) -> bytes:
    for marker, literal in MARKERS.items():
        body = body.replace(marker, literal)
    return body


class Forums:
    """Reddit, Discourse, Mastodon, Hacker News (both modes), a feed, GitHub Discussions,
    a Stack Exchange site and Lemmy on one server."""

    def __init__(self) -> None:
        self.reddit = FakeReddit()
        self.reddit.add_subreddit("gig")
        self.mastodon = FakeMastodon(prefix="/masto")
        self.discourse = FakeDiscourse(prefix="/forum")
        self.topic = self.discourse.add_thread(
            title="Gig pay", author="op", created_at=NOW - 6 * HOUR
        ).topic_id
        self.hn = FakeHackerNews()
        self.feeds = FakeFeeds()
        self.feeds.add_feed("/feed.rss", limit=100)
        self.github = FakeGitHub(prefix="/gh")
        self.github.add_repository("acme/gig")
        self.gh_thread = self.github.add_discussion("acme/gig", created=NOW - 6 * HOUR)
        for state in (stackexchange.ROOT_CACHE, stackexchange.BACKOFFS):
            state.clear()  # process-wide: ids of an earlier test's site must not leak in
        self.stackexchange = FakeStackExchange(prefix="/se")
        self.stackexchange.rewrite = unquote_markers  # its bodies are gzipped on the wire
        self.se_question = self.stackexchange.add_question(created=NOW - 6 * HOUR)
        self.lemmy = FakeLemmy(prefix="/lemmy")
        self.lemmy_gig = self.lemmy.add_community("gig")
        self.lemmy_post = self.lemmy.add_post(
            self.lemmy_gig, published=NOW - 6 * HOUR, author="op", title="Gig pay"
        )
        router = Router()
        self.stackexchange.register(router)
        self.reddit.register(router)
        self.mastodon.register(router)
        self.discourse.register(router)
        self.hn.register(router, prefix="/hn")
        self.feeds.register(router)
        self.github.register(router)
        self.lemmy.register(router)
        self.server = FakeForumServer(router)
        self.server.rewrite = unquote_markers
        self.story = self.hn.add_story(by="op", title="Gig pay", time=NOW - 6 * HOUR)
        self.serial = 0

    def good(self, community: str, at: int) -> None:
        """One good item for ``community``, created at ``at``."""
        self.serial += 1
        n = self.serial
        if community == "reddit":
            self.reddit.add_thread("gig", created=at, author=f"u{n % 3}", title=f"Good {n}")
        elif community == "discourse":
            self.discourse.add_reply(topic_id=self.topic, author=f"d{n % 3}", created_at=at)
        elif community == "mastodon":
            self.mastodon.add_status("gig", created=at, author=f"m{n % 3}")
        elif community == "github":
            self.github.add_comment(self.gh_thread, created=at, author=f"g{n % 3}")
        elif community == "stackexchange":
            self.stackexchange.add_answer(self.se_question, created=at, author=f"s{n % 3}")
        elif community == "lemmy":
            self.lemmy.add_comment(self.lemmy_post, published=at, author=f"l{n % 3}")
        elif community in ("hn_site", "hn_query"):
            self.hn.add_comment(parent=self.story, by=f"h{n % 3}", text=f"gig {n}", time=at)
        else:
            self.feeds.add_entry(
                "/feed.rss", guid=f"entry-{n}", title=f"Good {n}", published=at, author="ed"
            )


@dataclass(frozen=True)
class Poison:
    community: str
    name: str
    add: Callable[[Forums], None]
    rejected: str | None
    """The reason it is counted under, or None when it is stored (made safe)."""


def reddit_thread(**extra: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        name = forums.reddit.add_thread("gig", created=NOW - 90 * 60, title="Bad")
        forums.reddit.posts[name].extra = dict(extra)

    return add


def mastodon_status(**extra: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        number = forums.mastodon.add_status("gig", created=NOW - 90 * 60)
        forums.mastodon.statuses[int(number)].extra = dict(extra)

    return add


def hn_comment(**fields: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        raw = {"type": "comment", "by": "x", "parent": forums.story, "text": "gig bad"}
        forums.hn.add_raw({**raw, "time": NOW - 90 * 60, **fields})

    return add


def feed_entry(**fields: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        entry = {"guid": "bad", "title": "Bad", "published": NOW - 90 * 60, **fields}
        forums.feeds.add_entry("/feed.rss", **entry)

    return add


def discourse_reply(**fields: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        reply = {"author": "x", "created_at": NOW - 90 * 60, **fields}
        forums.discourse.add_reply(topic_id=forums.topic, **reply)

    return add


def discourse_raw(post_id: str) -> Callable[[Forums], None]:
    """Hand-made: a post whose database id is written as given, listed above every post."""

    def add(forums: Forums) -> None:
        raw = {
            "id": "@ID@",
            "topic_id": forums.topic,
            "post_number": 99,
            "post_type": 1,
            "created_at": iso(NOW - 90 * 60),
            "username": "mallory",
            "raw": "odd",
        }
        text = json.dumps(raw).replace('"@ID@"', post_id)
        forums.discourse.add_raw_post(text, listed_as=10**18)

    return add


def github_comment(**fields: Any) -> Callable[[Forums], None]:
    """A comment whose rendered fields ``fields`` replace (hand-made: no recording has one)."""

    def add(forums: Forums) -> None:
        ident = forums.github.add_comment(forums.gh_thread, created=NOW - 90 * 60)
        forums.github.posts[ident].extra = dict(fields)

    return add


def lemmy_comment(**fields: Any) -> Callable[[Forums], None]:
    """A comment on the community's post, listed at 90 minutes ago, ``fields`` as served."""

    def add(forums: Forums) -> None:
        comment = forums.lemmy.add_comment(forums.lemmy_post, published=NOW - 90 * 60)
        comment.extra = dict(fields)

    return add


def se_answer(**extra: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        site = forums.stackexchange
        answer = site.add_answer(forums.se_question, created=NOW - 90 * 60)
        site.posts[answer].extra = dict(extra)

    return add


def github_discussion_updated_in_9999(forums: Forums) -> None:
    """A discussion whose ``updatedAt`` says 9999: listed first, it must not become the
    mark that every later activity lies below."""
    ident = forums.github.add_discussion("acme/gig", created=NOW - 90 * 60)
    forums.github.posts[ident].extra = {"updatedAt": "9999-12-31T23:59:59Z"}


def se_question(**extra: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        question = forums.stackexchange.add_question(created=NOW - 90 * 60)
        forums.stackexchange.posts[question].extra = dict(extra)

    return add


def se_comment(**extra: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        site = forums.stackexchange
        comment = site.add_comment(forums.se_question, created=NOW - 90 * 60)
        site.comments[comment].extra = dict(extra)

    return add


def lemmy_post(**fields: Any) -> Callable[[Forums], None]:
    def add(forums: Forums) -> None:
        forums.lemmy.add_post(forums.lemmy_gig, published=NOW - 90 * 60).extra = dict(fields)

    return add


def far_future_status(forums: Forums) -> None:
    """A status whose id encodes the year 2286: every later id would sit below it."""
    forums.mastodon.add_status("gig", created=NOW - 90 * 60, arrived=10_000_000_000)


POISONS = [
    Poison("reddit", "year 9999", reddit_thread(created_utc=YEAR_9999), "bad_time"),
    Poison("reddit", "NaN time", reddit_thread(created_utc="__NaN__"), "bad_time"),
    Poison("reddit", "1e400 time", reddit_thread(created_utc="__1e400__"), "bad_time"),
    Poison("reddit", "1e20 time", reddit_thread(created_utc=1e20), "bad_time"),
    Poison("reddit", "no time", reddit_thread(created_utc=None), "missing_field"),
    Poison("reddit", "surrogates", reddit_thread(author=SURROGATE, title=SURROGATE), None),
    Poison("reddit", "NUL bytes", reddit_thread(title=NUL_TITLE, selftext="a\x00b"), None),
    Poison("reddit", "long id", reddit_thread(name="t3_" + LONG_ID_TAIL), None),
    Poison("reddit", "long link", reddit_thread(permalink=LONG_PATH), None),
    Poison("discourse", "year 9999", discourse_reply(created_at=YEAR_9999), "bad_time"),
    Poison("discourse", "huge id", discourse_raw(str(10**15)), None),
    Poison("discourse", "impossible id", discourse_raw(str(2**60)), "bad_id"),
    Poison("discourse", "1e400 id", discourse_raw("1e400"), "bad_id"),
    Poison("discourse", "surrogates", discourse_reply(author=SURROGATE, text=SURROGATE), None),
    Poison("discourse", "NUL bytes", discourse_reply(text="a\x00b"), None),
    Poison(
        "mastodon",
        "year 9999",
        mastodon_status(created_at="9999-12-31T23:59:59.000Z"),
        "bad_time",
    ),
    Poison("mastodon", "id from the future", far_future_status, "bad_id"),
    Poison("mastodon", "surrogates", mastodon_status(content=SURROGATE), None),
    Poison("mastodon", "NUL bytes", mastodon_status(content="<p>a\x00b</p>"), None),
    Poison("hn_site", "year 9999", hn_comment(time=YEAR_9999), "bad_time"),
    Poison("hn_site", "1e20 time", hn_comment(time=10**20), "bad_time"),
    Poison("hn_site", "NaN time", hn_comment(time="__NaN__"), "bad_time"),
    Poison("hn_site", "surrogates", hn_comment(by=SURROGATE, text=SURROGATE), None),
    Poison("hn_site", "NUL bytes", hn_comment(text="gig a\x00b"), None),
    Poison("hn_query", "year 9999", hn_comment(time=YEAR_9999), "bad_time"),
    Poison("hn_query", "1e400 time", hn_comment(time="__1e400__"), "bad_time"),
    Poison("hn_query", "surrogates", hn_comment(by=SURROGATE, text="gig " + SURROGATE), None),
    Poison("github", "year 9999", github_comment(createdAt="9999-12-31T23:59:59Z"), "bad_time"),
    Poison("github", "unreadable time", github_comment(createdAt="yesterday"), "missing_field"),
    Poison("github", "updated in 9999", github_discussion_updated_in_9999, None),
    Poison(
        "github",
        "surrogates",
        github_comment(author={"__typename": "User", "login": SURROGATE}, bodyText=SURROGATE),
        None,
    ),
    Poison("github", "NUL bytes", github_comment(bodyText="a\x00b"), None),
    Poison("github", "long id", github_comment(id="DC_" + LONG_ID_TAIL), None),
    Poison("github", "profile link", github_comment(url="https://github.com/mallory"), None),
    Poison("stackexchange", "year 9999", se_answer(creation_date=YEAR_9999), "bad_time"),
    Poison("stackexchange", "NaN time", se_answer(creation_date="__NaN__"), "bad_time"),
    Poison("stackexchange", "1e400 time", se_answer(creation_date="__1e400__"), "bad_time"),
    Poison("stackexchange", "1e20 time", se_answer(creation_date=1e20), "bad_time"),
    Poison("stackexchange", "time as text", se_answer(creation_date="today"), "bad_time"),
    Poison("stackexchange", "no time", se_answer(creation_date=None), "missing_field"),
    Poison("stackexchange", "impossible id", se_answer(answer_id=2**60), "bad_id"),
    Poison("stackexchange", "id as text", se_answer(answer_id="x1"), "bad_id"),
    Poison("stackexchange", "no question", se_answer(question_id=None), "missing_field"),
    Poison("stackexchange", "comment on no post", se_comment(post_id=None), "missing_field"),
    # a post the site does not have (deleted meanwhile): taken for a question of its own
    Poison("stackexchange", "comment on a gone post", se_comment(post_id=987_654), None),
    Poison("stackexchange", "surrogates", se_answer(body=SURROGATE), None),
    Poison("stackexchange", "NUL bytes", se_question(title=NUL_TITLE, body="a\x00b"), None),
    Poison(
        "stackexchange",
        "long link",
        se_question(link="https://stackoverflow.com" + LONG_PATH),
        None,
    ),
    Poison("lemmy", "year 9999", lemmy_comment(published="9999-12-31T23:59:59Z"), "bad_time"),
    Poison("lemmy", "before Lemmy", lemmy_post(published="2001-01-01T00:00:00Z"), "bad_time"),
    Poison("lemmy", "unreadable time", lemmy_comment(published="yesterday"), "bad_time"),
    Poison("lemmy", "no time", lemmy_comment(published=None), "missing_field"),
    Poison("lemmy", "id past PostgreSQL's integer", lemmy_comment(id=2**40), "bad_id"),
    Poison("lemmy", "id true", lemmy_post(id=True), "bad_id"),
    Poison("lemmy", "surrogates", lemmy_comment(content=SURROGATE), None),
    Poison("lemmy", "NUL bytes", lemmy_post(name=NUL_TITLE, body="a\x00b"), None),
    Poison("lemmy", "long link", lemmy_comment(ap_id="https://lemmy.example" + LONG_PATH), None),
    Poison("lemmy", "broken path", lemmy_comment(path="0.x.y"), None),
    Poison("lemmy", "path of odd digits", lemmy_comment(path="0.\u00b2." + "9" * 5000), None),
    Poison("lemmy", "unsplittable link", lemmy_comment(ap_id="http://[lemmy.example/1"), None),
    Poison("rss", "year 9999", feed_entry(published=YEAR_9999), "bad_time"),
    Poison("rss", "control characters", feed_entry(title="Bad\x01\x1b title"), None),
    Poison("rss", "long id", feed_entry(guid="g" * 300), None),
    Poison("rss", "long link", feed_entry(link="https://feed.example" + LONG_PATH), None),
]


def config(forums: Forums, tmp_path: Path, database_url: str) -> dict[str, Any]:
    base = forums.server.base_url
    data = service_config(
        tmp_path,
        [
            {"id": "reddit", "source": "reddit", "subreddit": "gig", "base_url": base},
            {"id": "discourse", "source": "discourse", "base_url": base + "/forum"},
            {"id": "mastodon", "source": "mastodon", "base_url": base + "/masto", "hashtag": "gig"},
            {"id": "hn_site", "source": "hackernews", "base_url": base + "/hn"},
            {
                "id": "hn_query",
                "source": "hackernews",
                "query": "gig",
                "base_url": base + "/hn",
                "search_base_url": base + "/hn",
            },
            {"id": "rss", "source": "rss", "url": base + "/feed.rss"},
            {
                "id": "github",
                "source": "github",
                "repository": "acme/gig",
                "base_url": base + "/gh",
            },
            {
                "id": "stackexchange",
                "source": "stackexchange",
                "site": "stackoverflow",
                "base_url": base + "/se",
            },
            {"id": "lemmy", "source": "lemmy", "base_url": base + "/lemmy", "community": "gig"},
        ],
    )
    return {**data, "database_url": database_url, "store_bodies": True}


@pytest.fixture
def forums() -> Iterator[Forums]:
    forums = Forums()
    with forums.server:
        yield forums


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


def rejected(registry: CollectorRegistry, community: str, reason: str) -> float:
    labels = {"community": community, "source": source_of(community), "reason": reason}
    return registry.get_sample_value("forum_monitor_items_rejected_total", labels) or 0.0


def source_of(community: str) -> str:
    return "hackernews" if community.startswith("hn_") else community


@pytest.mark.parametrize("poison", POISONS, ids=lambda p: f"{p.community}-{p.name}")
async def test_one_bad_item_neither_blocks_nor_blinds(
    poison: Poison, forums: Forums, tmp_path: Path, database_url: str
) -> None:
    name = poison.community
    for hours in (5, 4, 3):
        forums.good(name, NOW - hours * HOUR)
    poison.add(forums)
    for minutes in (80, 70):
        forums.good(name, NOW - minutes * 60)

    registry = CollectorRegistry()
    settings = settings_from_mapping(config(forums, tmp_path, database_url))
    service = Service(settings, registry=registry)
    await service.open()
    try:
        community = next(c for c in settings.communities if c.id == name)
        first = await service.poll(community)
        assert (first.outcome, first.error) == ("ok", None)
        for minutes in (30, 20, 10):  # after the poison, as activity goes on
            forums.good(name, NOW - minutes * 60)
        second = await service.poll(community)
        assert (second.outcome, second.error) == ("ok", None)
        assert service.engine is not None
        with Session(service.engine) as session:
            stored = session.exec(select(Post).where(Post.community_id == name)).all()
        # 8 good items, the story Hacker News comments (the topic Discourse replies, the
        # discussion GitHub comments, the question Stack Exchange answers, the post Lemmy
        # comments) answer, and the poison if made safe
        expected = 8 + name.startswith(("hn_", "discourse", "github", "stackexchange", "lemmy"))
        expected += poison.rejected is None
        assert stored_posts(service.engine, name) == (expected, expected)
        assert second.new_items >= 3  # not blinded: the posts after the poison came in
        if poison.rejected:
            assert rejected(registry, name, poison.rejected) == 1  # once, though seen twice
        else:
            assert sum(rejected(registry, name, r) for r in ("bad_time", "bad_id")) == 0
        for post in stored:
            assert post.created_at <= NOW + 60
            assert "\x00" not in (post.body or "") + (post.url or "") + post.external_id
            assert len(post.external_id) <= 128 and len(post.url or "") <= 2048
    finally:
        await service.stop()


async def opened(
    forums: Forums, tmp_path: Path, database_url: str, *, clock: Callable[[], float] = time.time
) -> tuple[Service, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = settings_from_mapping(config(forums, tmp_path, database_url))
    service = Service(settings, registry=registry, clock=clock)
    await service.open()
    return service, registry


def reddit_of(service: Service) -> Any:
    return next(c for c in service.settings.communities if c.id == "reddit")


@pytest.mark.parametrize("retry_after", ["1e300", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_a_hostile_retry_after_pauses_a_community_for_an_hour_at_most(
    retry_after: str, forums: Forums, tmp_path: Path
) -> None:
    """A 1e300 wait raised OverflowError out of the poller on every interval, unrecorded; a
    wait dated year 9999 was stored and kept the community unpolled for good."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    forums.good("reddit", NOW - HOUR)
    forums.server.inject(Fault("status", status=429, retry_after=retry_after, path_prefix="/r/"))
    service, _ = await opened(forums, tmp_path, url)
    try:
        failed = await service.poll(reddit_of(service))
        assert failed.outcome == "rate_limited"
        assert service.engine is not None
        with Session(service.engine) as session:
            state = session.get(PollState, "reddit")
            assert state is not None and state.not_before is not None
            assert state.not_before <= time.time() + MAX_SERVER_WAIT
            assert state.last_error is not None and "429" in state.last_error
        assert (await service.poll(reddit_of(service))).outcome == "deferred"
    finally:
        await service.stop()
    # after a restart an hour on, the community is polled again
    later, _ = await opened(forums, tmp_path, url, clock=lambda: time.time() + 3601)
    try:
        assert (await later.poll(reddit_of(later))).outcome == "ok"
    finally:
        await later.stop()


async def test_a_wait_stored_for_year_9999_is_read_as_an_hour(
    forums: Forums, tmp_path: Path
) -> None:
    """An older release stored the server's wait as given; it must not stop polls for good."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    forums.good("reddit", NOW - HOUR)
    service, _ = await opened(forums, tmp_path, url, clock=lambda: time.time() + 3601)
    try:
        assert service.engine is not None
        with Session(service.engine) as session:
            ensure_community(session, community=reddit_of(service), now=NOW)
            state = session.get(PollState, "reddit")
            assert state is not None
            state.last_attempt_at, state.not_before = NOW, YEAR_9999
            session.add(state)
            session.commit()
        assert (await service.poll(reddit_of(service))).outcome == "ok"
    finally:
        await service.stop()


FAIL_POST_INSERTS = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON posts "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


async def test_a_failed_database_write_is_the_last_error(
    forums: Forums, tmp_path: Path, database_url: str
) -> None:
    """It was logged but not recorded, so the status page said "Last error: none"."""
    forums.good("reddit", NOW - HOUR)
    service, registry = await opened(forums, tmp_path, database_url)
    try:
        assert service.engine is not None
        with service.engine.begin() as connection:
            for statement in FAIL_POST_INSERTS[service.engine.dialect.name]:
                connection.exec_driver_sql(statement)
        outcome = await service.poll(reddit_of(service))
        assert outcome.outcome == "store"
        with Session(service.engine) as session:
            state = session.get(PollState, "reddit")
            assert state is not None and state.last_error is not None
            assert "database error" in state.last_error and "disk on fire" in state.last_error
            runs = session.exec(select(PollRun).where(PollRun.community_id == "reddit")).all()
            assert [run.outcome for run in runs] == ["store"]
        labels = {"community": "reddit", "source": "reddit", "reason": "store"}
        assert registry.get_sample_value("forum_monitor_poll_failures_total", labels) == 1
        await service.refresh(reddit_of(service))
        assert service.snapshots is not None
        snapshot = service.snapshots.get("reddit")
        assert snapshot is not None and "disk on fire" in (snapshot.last_error or "")
    finally:
        await service.stop()
