"""A hand-built forum history small enough that every metric can be worked out by hand.

Three communities over 60 days before a fixed ``NOW`` (2024-06-01 12:00 UTC, so every
window starts at 12:00 and UTC days split cleanly):

- ``gig`` (reddit): busy 30-56 days ago, then declining; pay complaints; a deleted reply.
- ``rival`` (discourse): two posts 45 days ago, then growing; mostly new participants.
- ``steady`` (hackernews): one "Weekly thread" a week; a deleted thread start; posts
  exactly on the 28d, 7d, 1d and previous-7d window boundaries.

Times are written as ``at(day, "HH:MM")``: ``day`` 0 is NOW's UTC day, -1 the day before.
The windows (half-open, ``[NOW - W, NOW)``) in that notation:

    1d  = [at(-1, "12:00"), NOW)      previous 1d  = [at(-2, "12:00"), at(-1, "12:00"))
    7d  = [at(-7, "12:00"), NOW)      previous 7d  = [at(-14, "12:00"), at(-7, "12:00"))
    28d = [at(-28, "12:00"), NOW)     previous 28d = [at(-56, "12:00"), at(-28, "12:00"))

Every text is one of the few below, each scored once with VADER (compound) by a one-off
script; the scores are literals so the expected means can be derived by hand.
Keyword groups: ``pay = ["pay cut", "$/hr", "rate"]``, ``leave = ["switching to", "quit"]``.

The history is ingested through ``Ingestor`` in weekly polls (items created in
``[previous poll, poll)``), each followed by a rollup refresh of the touched days, so
threads whose replies arrive in a later poll exercise the incremental paths. The first
poll reaches back 60 days; every later one starts where the previous ended, so the store
is fully covered from ``NOW - 60d`` to ``NOW``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from monitor.analysis.rollups import refresh_days
from monitor.config import CommunityBase, Settings, settings_from_mapping
from monitor.ingest import Ingestor, IngestResult
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db

DAY = 86400
HOUR = 3600
NOW = 1717243200  # 2024-06-01T12:00:00Z
TODAY = NOW - 12 * HOUR  # 2024-06-01T00:00:00Z, UTC midnight of NOW's day
KEY = b"fixture-pseudonym-key-0123456789"


def at(day: int, clock: str) -> int:
    """Epoch seconds of ``clock`` (UTC) on the day ``day`` days from NOW's day."""
    hours, minutes = (int(part) for part in clock.split(":"))
    return TODAY + day * DAY + hours * HOUR + minutes * 60


def day_start(day: int) -> int:
    return TODAY + day * DAY


# Texts and their VADER compound scores (looked up once, written as literals).
NEUTRAL_1 = "Weekly thread"  # 0.0
NEUTRAL_2 = "Schedule for Tuesday"  # 0.0
NEUTRAL_3 = "Meetup on Friday"  # 0.0
NEUTRAL_4 = "Same here"  # 0.0
NEUTRAL_5 = "Any tips for the app"  # 0.0
NEUTRAL_6 = "New member here"  # 0.0
SEPARATELY = "I will answer separately"  # 0.0; "separately" must not match "rate"
GREAT = "Thanks, this is great"  # +0.7906
COMMUNITY = "Great community"  # +0.6249
WELCOME = "Welcome aboard"  # +0.4767
RATE_UP = "The rate went up, great"  # +0.6249; pay
AWFUL = "This is awful"  # -0.4588
BAD = "Bad support"  # -0.2023
PAY_CUT = "Another pay cut this week"  # -0.3612; pay ("pay cut")
RATE_AWFUL = "The rate is awful"  # -0.4588; pay ("rate")
PER_HOUR = "Now 12 $/hr, not good"  # -0.3412; pay ("$/hr")
PAY_CUTS = "Pay cuts again"  # -0.3818; NOT pay: "pay cuts" is not the phrase "pay cut"
SWITCHING = "Switching to rival"  # 0.0; leave ("switching to")
QUIT = "I quit, switching to rival"  # 0.0; leave ("quit" and "switching to": one group)
DELETED = "[deleted]"  # not scored

SCORES = {
    NEUTRAL_1: 0.0,
    NEUTRAL_2: 0.0,
    NEUTRAL_3: 0.0,
    NEUTRAL_4: 0.0,
    NEUTRAL_5: 0.0,
    NEUTRAL_6: 0.0,
    SEPARATELY: 0.0,
    GREAT: 0.7906,
    COMMUNITY: 0.6249,
    WELCOME: 0.4767,
    RATE_UP: 0.6249,
    AWFUL: -0.4588,
    BAD: -0.2023,
    PAY_CUT: -0.3612,
    RATE_AWFUL: -0.4588,
    PER_HOUR: -0.3412,
    PAY_CUTS: -0.3818,
    SWITCHING: 0.0,
    QUIT: 0.0,
}

KEYWORDS = {"pay": ["pay cut", "$/hr", "rate"], "leave": ["switching to", "quit"]}
GROUPS = ["leave", "pay"]

SETTINGS_DATA: dict[str, Any] = {
    "pseudonym_key": KEY.decode(),
    "keywords": KEYWORDS,
    "communities": [
        {"id": "gig", "source": "reddit", "subreddit": "gigwork", "interval": "1h"},
        {
            "id": "rival",
            "source": "discourse",
            "base_url": "https://forum.rival.example",
            "interval": "1h",
        },
        {"id": "steady", "source": "hackernews", "interval": "1h"},
    ],
}
SOURCES = {"gig": "reddit", "rival": "discourse", "steady": "hackernews"}


@dataclass(frozen=True)
class Spec:
    """One post: a thread start when ``post == thread``, else a reply to the thread start."""

    post: str
    thread: str
    time: int
    author: str | None
    text: str

    @property
    def deleted(self) -> bool:
        return self.text == DELETED


def _t(post: str, time: int, author: str | None, text: str) -> Spec:
    return Spec(post, post, time, author, text)


def _r(post: str, thread: str, time: int, author: str | None, text: str) -> Spec:
    return Spec(post, thread, time, author, text)


# Author first seen: a -59 10:00, b -59 11:00, c -50 09:00, d -50 13:00, e -40 11:00,
# f -19 10:00.
GIG = [
    _t("g1", at(-59, "10:00"), "a", NEUTRAL_2),  # before every window
    _r("g1r1", "g1", at(-59, "11:00"), "b", NEUTRAL_4),
    _t("g2", at(-50, "09:00"), "c", COMMUNITY),  # previous 28d
    _r("g2r1", "g2", at(-50, "10:00"), "a", WELCOME),
    _r("g2r2", "g2", at(-50, "13:00"), "d", NEUTRAL_4),
    _t("g3", at(-40, "09:00"), "d", NEUTRAL_3),
    _r("g3r1", "g3", at(-40, "11:00"), "e", GREAT),
    _r("g3r2", "g3", at(-39, "09:00"), "b", NEUTRAL_4),
    _t("g4", at(-30, "08:00"), "e", NEUTRAL_5),
    _r("g4r1", "g4", at(-30, "09:00"), "c", NEUTRAL_4),
    _t("g5", at(-20, "10:00"), "a", PAY_CUT),  # 28d
    _r("g5r1", "g5", at(-20, "12:00"), "b", RATE_AWFUL),
    _r("g5r2", "g5", at(-19, "10:00"), "f", SEPARATELY),  # f's first post
    _t("g6", at(-10, "08:00"), "c", PAY_CUTS),  # previous 7d; never answered
    _t("g7", at(-5, "09:00"), "b", PER_HOUR),  # 7d
    _r("g7r1", "g7", at(-5, "10:00"), None, DELETED),  # deleted: counts, no author, no score
    _r("g7r2", "g7", at(-4, "09:00"), "a", SWITCHING),
    _t("g8", at(-2, "15:00"), "f", NEUTRAL_2),  # previous 1d
    _r("g8r1", "g8", at(-1, "09:00"), "b", NEUTRAL_4),  # previous 1d (before -1 12:00)
    _r("g8r2", "g8", at(-1, "14:00"), "a", QUIT),  # 1d
    _t("g9", at(0, "06:00"), "b", AWFUL),  # 1d; 6 h old, unanswered but within the grace
]

# Author first seen: a -45 10:00, b -45 12:00, c -20 09:00, d -10 09:00,
# e -7 12:00 (exactly the 7d start), f -6 10:00, g -3 09:30, h -2 15:00, i -1 15:00.
RIVAL = [
    _t("r1", at(-45, "10:00"), "a", WELCOME),  # previous 28d
    _r("r1r1", "r1", at(-45, "12:00"), "b", NEUTRAL_4),
    _t("r2", at(-20, "09:00"), "c", NEUTRAL_1),  # 28d
    _r("r2r1", "r2", at(-20, "19:00"), "a", GREAT),  # first reply after 10 h
    _t("r3", at(-10, "09:00"), "d", NEUTRAL_5),  # previous 7d
    _r("r3r1", "r3", at(-10, "13:00"), "c", NEUTRAL_4),  # first reply after 4 h
    _t("r4", at(-7, "12:00"), "e", NEUTRAL_2),  # exactly the 7d start: inside 7d
    _r("r4r1", "r4", at(-7, "20:00"), "a", WELCOME),  # first reply after 8 h
    _r("r3r2", "r3", at(-6, "09:00"), "c", COMMUNITY),  # 7d reply to a thread from before
    _r("r4r2", "r4", at(-6, "10:00"), "f", RATE_UP),
    _t("r9", at(-4, "10:00"), "b", NEUTRAL_2),  # b is back; never answered
    _t("r5", at(-3, "09:00"), "f", NEUTRAL_3),
    _r("r5r1", "r5", at(-3, "09:30"), "g", NEUTRAL_4),  # first reply after 30 min
    _r("r5r2", "r5", at(-3, "10:00"), "a", COMMUNITY),
    _t("r6", at(-2, "14:00"), "g", NEUTRAL_6),  # previous 1d
    _r("r6r1", "r6", at(-2, "15:00"), "h", WELCOME),  # first reply after 1 h
    _t("r7", at(-1, "13:00"), "h", NEUTRAL_5),  # 1d; 23 h old: within the grace
    _r("r7r1", "r7", at(-1, "15:00"), "i", NEUTRAL_4),  # first reply after 2 h
    _t("r8", at(0, "08:00"), "i", SWITCHING),  # young and unanswered
    _r("r6r2", "r6", at(0, "09:00"), "a", GREAT),
]

# Author first seen: a -58 12:00, d -58 13:00, b -49 14:00, c -42 13:00, e 0 10:00.
STEADY = [
    _t("s1", at(-58, "12:00"), "a", NEUTRAL_1),  # before every window
    _r("s1r1", "s1", at(-58, "13:00"), "d", NEUTRAL_4),
    _t("s2", at(-49, "12:00"), "a", NEUTRAL_1),  # previous 28d
    _r("s2r1", "s2", at(-49, "14:00"), "b", COMMUNITY),
    _t("s3", at(-42, "12:00"), "a", NEUTRAL_1),
    _r("s3r1", "s3", at(-42, "13:00"), "c", BAD),
    _t("s4", at(-35, "12:00"), "a", NEUTRAL_1),
    _r("s4r1", "s4", at(-35, "15:00"), "b", NEUTRAL_4),
    _t("s5", at(-28, "12:00"), "a", NEUTRAL_1),  # exactly the 28d start: inside 28d
    _r("s5r1", "s5", at(-28, "14:00"), "c", GREAT),  # first reply after 2 h
    _t("s6", at(-21, "12:00"), "a", NEUTRAL_1),
    _r("s6r1", "s6", at(-21, "13:00"), "b", AWFUL),  # first reply after 1 h
    _t("s7", at(-14, "12:00"), None, DELETED),  # deleted thread start, previous 7d start
    _r("s7r1", "s7", at(-14, "16:00"), "c", NEUTRAL_4),  # first reply after 4 h
    _t("s8", at(-7, "12:00"), "a", NEUTRAL_1),  # exactly the 7d start
    _r("s8r1", "s8", at(-7, "18:00"), "b", WELCOME),  # first reply after 6 h
    _r("s8r2", "s8", at(-3, "12:00"), "d", NEUTRAL_4),  # d is back after 55 days
    _t("s9", at(-1, "12:00"), "a", NEUTRAL_1),  # exactly 24 h old: past the grace, unanswered
    _t("s10", at(0, "10:00"), "e", NEUTRAL_5),  # e's first post; 2 h old
    _r("s8r3", "s8", at(0, "11:00"), "b", COMMUNITY),
]

POSTS: dict[str, list[Spec]] = {"gig": GIG, "rival": RIVAL, "steady": STEADY}
FIRST_POLL_SINCE = NOW - 60 * DAY
POLLS = [NOW - weeks * 7 * DAY for weeks in range(8, -1, -1)]
"""Weekly poll times, NOW - 56d ... NOW; the first reaches back to NOW - 60d."""


def spec(community_id: str, post: str) -> Spec:
    return next(s for s in POSTS[community_id] if s.post == post)


def settings(**overrides: object) -> Settings:
    return settings_from_mapping({**SETTINGS_DATA, **overrides})


def community(settings_: Settings, community_id: str) -> CommunityBase:
    return next(c for c in settings_.communities if c.id == community_id)


def item(spec: Spec) -> Item:
    is_thread = spec.post == spec.thread
    return Item(
        external_id=spec.post,
        kind="thread" if is_thread else "reply",
        thread_id=spec.thread,
        created_at=spec.time,
        parent_id=None if is_thread else spec.thread,
        author=spec.author,
        title=spec.text if is_thread and not spec.deleted else "",
        text="" if is_thread and not spec.deleted else spec.text,
        deleted=spec.deleted,
    )


def batch(
    community_id: str,
    items: Iterable[Item],
    *,
    fetched_at: int,
    since: int = 0,
    cursor: dict[str, object] | None = None,
    complete: bool = True,
    covered_from: int | None = None,
) -> Batch:
    return Batch(
        envelopes=[Envelope(community_id, SOURCES[community_id], fetched_at, i) for i in items],
        cursor=cursor if cursor is not None else {"polled": fetched_at},
        validators={},
        requests=1,
        not_modified=False,
        since=since,
        complete=complete,
        covered_from=covered_from,
    )


def ingest(
    engine: Engine,
    ingestor: Ingestor,
    settings_: Settings,
    community_id: str,
    items: Iterable[Item],
    *,
    now: int,
    since: int = 0,
    complete: bool = True,
    covered_from: int | None = None,
) -> IngestResult:
    """One poll at ``now``: ingest, then refresh the rollups of the touched days."""
    with db.session_scope(engine) as session:
        result = ingestor.ingest(
            session,
            community=community(settings_, community_id),
            batch=batch(
                community_id,
                items,
                fetched_at=now,
                since=since,
                complete=complete,
                covered_from=covered_from,
            ),
            started_at=now,
            now=now,
        )
        refresh_days(session, community_id=community_id, days=result.touched_days, now=now)
    return result


def make_store(path: Path | None = None, *, url: str | None = None) -> Engine:
    """A migrated empty store: a SQLite file under ``path``, or the database at ``url``."""
    if url is None:
        assert path is not None
        url = f"sqlite:///{path / 'forum.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    return engine


def build(
    path: Path | None = None, *, url: str | None = None, settings_: Settings | None = None
) -> tuple[Engine, Settings]:
    """A fresh store (SQLite under ``path``, or ``url``) holding the whole fixture history."""
    settings_ = settings_ or settings()
    engine = make_store(path, url=url)
    ingestor = Ingestor(settings=settings_, key=KEY)
    for community_id, specs in POSTS.items():
        previous = FIRST_POLL_SINCE
        for poll in POLLS:
            due = [item(s) for s in specs if previous <= s.time < poll]
            since = FIRST_POLL_SINCE if previous == FIRST_POLL_SINCE else 0
            ingest(engine, ingestor, settings_, community_id, due, now=poll, since=since)
            previous = poll
    return engine, settings_
