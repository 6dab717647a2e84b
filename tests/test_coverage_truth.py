"""Coverage never claims time the service did not see, on every adapter.

The property: after any poll, every post the forum holds whose creation time lies in
a span the store calls covered has been stored. (Equivalently, every second that
coverage claims lies between the oldest item the adapter actually saw, or the
previous covered edge, and now.) Each adapter is driven through the whole service
against its fake forum on 127.0.0.1 with small page bounds, so first polls and
backlogs are bounded walks; the forum keeps posting between polls, with quiet spells,
bursts larger than a poll can read and outages (failing polls), and the property is
checked after every poll against the fake's own list of posts, the ground truth.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from monitor.analysis.coverage import covered_spans
from monitor.config import settings_from_mapping
from monitor.fakeforum.discourse import FakeDiscourse
from monitor.fakeforum.feeds import FakeFeeds
from monitor.fakeforum.github import FakeGitHub
from monitor.fakeforum.hackernews import FakeHackerNews
from monitor.fakeforum.lemmy import FakeLemmy, Version
from monitor.fakeforum.mastodon import FakeMastodon
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Fault, Router
from monitor.fakeforum.stackexchange import FakeStackExchange
from monitor.service import Service
from monitor.sources import discourse, github, hackernews, lemmy, mastodon, reddit, stackexchange
from monitor.store.models import Post
from tests.support import service_config

START = 1_780_000_000
"""The simulated clock's start (the service runs on it; the fakes only hold times)."""
HOUR = 3600
DAY = 86400
HISTORY_DAYS = 10


@dataclass
class Platform:
    """One adapter's fake and what it takes to add posts to it and read them back."""

    community: dict[str, Any]
    add: Callable[[int], None]
    """Add one post created at the given time."""
    truth: Callable[[], dict[str, int]]
    """Every post the forum holds in the community's scope: external id -> created."""
    tune: Callable[[pytest.MonkeyPatch], None] = lambda _: None
    resumes: bool = True
    """Whether a walk cut short goes on in the next poll (Reddit's does not: it moves on,
    and coverage leaves out what it did not list)."""


@dataclass
class Sim:
    clock: int = START
    rng: random.Random = field(default_factory=lambda: random.Random(20261201))


def reddit_platform(router: Router, base: str) -> Platform:
    fake = FakeReddit()
    fake.add_subreddit("gig")
    fake.register(router)
    threads: list[str] = []

    def add(at: int) -> None:
        if not threads or len(threads) % 3 == 0 or random.Random(at).random() < 0.3:
            threads.append(fake.add_thread("gig", created=at, author=f"u{at % 11}"))
        else:
            fake.add_reply(threads[-1], created=at, author=f"u{at % 13}")

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(fake, "listing_limit", 60)  # Reddit's ~1000-item horizon, scaled
        monkeypatch.setattr(reddit, "MAX_PAGES", 3)
        monkeypatch.setattr(reddit, "HORIZON_ITEMS", 50)  # below the fake's horizon

    return Platform(
        {"id": "reddit", "source": "reddit", "subreddit": "gig", "base_url": base},
        add,
        lambda: {name: int(post.created_utc) for name, post in fake.posts.items()},
        tune,
        resumes=False,
    )


def discourse_platform(router: Router, base: str) -> Platform:
    fake = FakeDiscourse(prefix="/forum")
    fake.register(router)
    topics: list[int] = []

    def add(at: int) -> None:
        if not topics or at % 5 == 0:
            topics.append(fake.add_thread(title="Gig", author=f"d{at % 7}", created_at=at).topic_id)
        else:
            fake.add_reply(topic_id=topics[-1], author=f"d{at % 11}", created_at=at)

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(discourse.Discourse, "max_pages", 2)

    return Platform(
        {"id": "forum", "source": "discourse", "base_url": base + "/forum"},
        add,
        lambda: {
            f"{post.topic_id}/{post.post_number}": int(post.created_at)
            for post in fake.posts.values()
        },
        tune,
    )


def mastodon_platform(router: Router, base: str) -> Platform:
    fake = FakeMastodon(prefix="/masto")
    fake.register(router)

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(mastodon.Mastodon, "max_pages", 2)

    return Platform(
        {"id": "masto", "source": "mastodon", "base_url": base + "/masto", "hashtag": "gig"},
        lambda at: None if fake.add_status("gig", created=at, author=f"m{at % 7}") else None,
        lambda: {str(number): int(status.created) for number, status in fake.statuses.items()},
        tune,
    )


def hn_platform(router: Router, base: str, *, query: bool) -> Platform:
    fake = FakeHackerNews()
    prefix = "/hnq" if query else "/hn"
    fake.register(router, prefix=prefix)
    stories: list[int] = []

    def add(at: int) -> None:
        if not stories or at % 4 == 0:
            stories.append(fake.add_story(by=f"s{at % 5}", title="gig talk", time=at))
        else:
            fake.add_comment(parent=stories[-1], by=f"c{at % 9}", text="gig pay", time=at)

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(hackernews.HackerNews, "max_items_per_poll", 40)
        monkeypatch.setattr(hackernews.HackerNews, "hits_per_page", 25)
        monkeypatch.setattr(hackernews.HackerNews, "max_pages_per_poll", 3)

    community: dict[str, Any] = {
        "id": "hnq" if query else "hn",
        "source": "hackernews",
        "base_url": base + prefix,
    }
    if query:
        community |= {"query": "gig", "search_base_url": base + prefix}
    return Platform(
        community,
        add,
        lambda: {str(i): int(raw["time"]) for i, raw in fake.items.items()},
        tune,
    )


def lemmy_platform(router: Router, base: str, *, version: Version) -> Platform:
    fake = FakeLemmy(prefix="/lemmy", version=version)
    gig = fake.add_community("gig")
    fake.register(router)
    posts: list[Any] = []

    def add(at: int) -> None:
        if not posts or at % 3 == 0:
            posts.append(fake.add_post(gig, published=at, author=f"l{at % 7}"))
        else:
            fake.add_comment(posts[-1], published=at, author=f"k{at % 9}", host="other.example")

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(lemmy.Lemmy, "page_size", 20)
        monkeypatch.setattr(lemmy.Lemmy, "max_pages", 3)

    def truth() -> dict[str, int]:
        return {
            **{f"post/{n}": int(post.published) for n, post in fake.posts.items()},
            **{f"comment/{n}": int(c.published) for n, c in fake.comments.items()},
        }

    community = {"id": "lemmy", "source": "lemmy", "base_url": base + "/lemmy", "community": "gig"}
    return Platform(community, add, truth, tune, resumes=False)


def feed_platform(router: Router, base: str) -> Platform:
    feeds = FakeFeeds()
    feeds.add_feed("/feed.rss", limit=30)
    feeds.register(router)
    added: dict[str, int] = {}

    def add(at: int) -> None:
        guid = f"entry-{len(added)}"
        feeds.add_entry("/feed.rss", guid=guid, title="t", published=at, author="ed")
        added[guid] = at

    return Platform({"id": "feed", "source": "rss", "url": base + "/feed.rss"}, add, lambda: added)


def github_platform(router: Router, base: str) -> Platform:
    fake = FakeGitHub(prefix="/gh")
    fake.add_repository("acme/gig")
    fake.register(router)
    threads: list[str] = []
    comments: list[str] = []

    def add(at: int) -> None:
        pick = random.Random(at)
        roll = pick.random()
        if not threads or at % 4 == 0:
            threads.append(fake.add_discussion("acme/gig", created=at, author=f"g{at % 7}"))
        elif roll < 0.2 and comments:  # a reply, to a recent comment or an old one
            comment = comments[-1] if roll < 0.1 else pick.choice(comments)
            fake.add_reply(comment, created=at, author=f"r{at % 5}")
        else:  # a comment, on the newest discussion or on an old one
            thread = threads[-1] if roll < 0.85 else pick.choice(threads)
            comments.append(fake.add_comment(thread, created=at, author=f"c{at % 9}"))

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        # small pages and windows, so walks are cut and discussions need follow-ups
        monkeypatch.setattr(github.GitHub, "discussions_page", 5)
        monkeypatch.setattr(github.GitHub, "comments_window", 3)
        monkeypatch.setattr(github.GitHub, "replies_window", 2)
        monkeypatch.setattr(github.GitHub, "follow_page", 10)
        monkeypatch.setattr(github.GitHub, "max_requests", 10)

    return Platform(
        {"id": "gh", "source": "github", "repository": "acme/gig", "base_url": base + "/gh"},
        add,
        lambda: {key: int(created) for key, created in fake.thread_posts("acme/gig").items()},
        tune,
    )


def stackexchange_platform(router: Router, base: str, *, tagged: bool) -> Platform:
    """Questions, answers to recent questions and comments on recent posts; a tagged
    community's scope is its questions (every other one) with their answers and comments."""
    for state in (stackexchange.ROOT_CACHE, stackexchange.SCOPE_CACHE, stackexchange.BACKOFFS):
        state.clear()  # process-wide: a port used by an earlier test must not leak ids
    prefix = "/set" if tagged else "/se"
    fake = FakeStackExchange(prefix=prefix)
    fake.register(router)
    questions: list[int] = []
    posts: list[int] = []

    def add(at: int) -> None:
        rng = random.Random(at)
        roll = rng.random()
        if not questions or roll < 0.25:
            tags = ("other",) if tagged and len(questions) % 2 else ("gig",)
            questions.append(fake.add_question(created=at, tags=tags, author=f"q{at % 7}"))
            posts.append(questions[-1])
        elif roll < 0.6:
            question = rng.choice(questions[-6:])
            posts.append(fake.add_answer(question, created=at, author=f"a{at % 11}"))
        else:
            fake.add_comment(rng.choice(posts[-12:]), created=at, author=f"c{at % 13}")

    def truth() -> dict[str, int]:
        def inside(item: Any) -> bool:
            question = fake.question_of(item)
            return question is not None and (not tagged or "gig" in question.tags)

        found = {str(p.id): p.created for p in fake.posts.values() if inside(p)}
        return found | {f"c{c.id}": c.created for c in fake.comments.values() if inside(c)}

    def tune(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(stackexchange, "PAGE_SIZE", 25)  # so walks take several pages
        monkeypatch.setattr(stackexchange.StackExchange, "max_pages", 2)
        monkeypatch.setattr(stackexchange.StackExchange, "max_lookups", 2)

    community: dict[str, Any] = {
        "id": "set" if tagged else "se",
        "source": "stackexchange",
        "site": "stackoverflow",
        "base_url": base + prefix,
    }
    if tagged:
        community["tagged"] = "gig"
    return Platform(community, add, truth, tune)


PLATFORMS: dict[str, Callable[[Router, str], Platform]] = {
    "reddit": reddit_platform,
    "discourse": discourse_platform,
    "mastodon": mastodon_platform,
    "hackernews-site": lambda router, base: hn_platform(router, base, query=False),
    "hackernews-query": lambda router, base: hn_platform(router, base, query=True),
    "rss": feed_platform,
    "github": github_platform,
    "stackexchange": lambda router, base: stackexchange_platform(router, base, tagged=False),
    "stackexchange-tagged": lambda router, base: stackexchange_platform(router, base, tagged=True),
    "lemmy": lambda router, base: lemmy_platform(router, base, version="0.19"),
    "lemmy-1.0": lambda router, base: lemmy_platform(router, base, version="1.0"),
}


def serving(name: str) -> Iterator[tuple[Platform, FakeForumServer]]:
    """Platform ``name`` on a fake server of its own, running."""
    router = Router()
    server = FakeForumServer(router)
    made = PLATFORMS[name](router, server.base_url)
    with server:
        yield made, server


@pytest.fixture(params=sorted(PLATFORMS))
def platform(request: pytest.FixtureRequest) -> Iterator[tuple[Platform, FakeForumServer]]:
    yield from serving(str(request.param))


def unseen_covered(service: Service, platform: Platform, *, until: int) -> list[tuple[str, int]]:
    """Posts created in a covered span (and before ``until``) that the store lacks."""
    community = platform.community["id"]
    assert service.engine is not None
    with Session(service.engine) as session:
        spans = covered_spans(session, community_id=community, since=0)
        stored = set(
            session.exec(select(Post.external_id).where(Post.community_id == community)).all()
        )
    assert all(end <= until for _, end in spans), "coverage reaches past now"
    return sorted(
        (key, created)
        for key, created in platform.truth().items()
        if created <= until and key not in stored and any(a <= created < b for a, b in spans)
    )


def add_between(platform: Platform, sim: Sim, start: int, end: int, count: int) -> None:
    for at in sorted(sim.rng.randint(start, end) for _ in range(count)):
        platform.add(at)


async def test_coverage_never_claims_a_post_it_did_not_store(
    platform: tuple[Platform, FakeForumServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, server = platform
    made.tune(monkeypatch)
    sim = Sim()
    # history: 15 days, more than history_days and more than a first walk reads
    add_between(made, sim, START - 15 * DAY, START - HOUR, 260)
    community = {**made.community, "history_days": HISTORY_DAYS, "interval": "30m"}
    settings = settings_from_mapping(service_config(tmp_path, [community]))
    service = Service(settings, registry=CollectorRegistry(), clock=lambda: sim.clock)
    await service.open()
    claimed: list[int] = []
    vouched: set[str] = set()
    try:
        target = settings.communities[0]
        for step in range(16):
            if step in (5, 6):  # an outage: polls fail while the forum goes on
                server.inject(Fault("status", status=500, count=10))
            else:
                server.clear()
            outcome = await service.poll(target)
            assert outcome.outcome in ("ok", "not_modified", "http_5xx"), outcome
            missing = unseen_covered(service, made, until=sim.clock)
            assert missing == [], f"step {step}: covered but never stored: {missing[:5]}"
            assert service.engine is not None
            with Session(service.engine) as session:
                spans = covered_spans(session, community_id=target.id, since=0)
            claimed.append(sum(b - a for a, b in spans))
            vouched |= {
                key
                for key, created in made.truth().items()
                if any(a <= created < b for a, b in spans)
            }
            # the forum goes on: a quiet spell, a steady half hour, or a burst past one poll
            burst = 120 if step in (2, 9) else sim.rng.choice([0, 3, 10])
            add_between(made, sim, sim.clock + 1, sim.clock + 1800, burst)
            sim.clock += 1800
    finally:
        await service.stop()
    # and it is not vacuous: coverage grew as walks ended, over hundreds of posts
    assert claimed[-1] > claimed[0] and len(vouched) > 150
