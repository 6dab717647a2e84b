"""The scripted history the end-to-end test serves from the fake forums.

60 days of posts with explicit timestamps, so the service's first poll
(``history_days = 60``) sees the whole past at once and every day from -59 on is
fully covered:

- ``declining`` (Reddit ``r/gigdecline``): weekly rhythm (weekdays busier), then
  over the last 10 days about half the threads, replies and participants, and the
  texts turn from praise to pay-cut complaints.
- ``steady`` (Discourse under ``/steady``): the same weekly rhythm throughout, the
  control: every week identical, so every 7-day ratio is exactly 1.
- ``offline`` (Discourse under ``/offline``): steady and small; the test switches
  its routes to 503 after the first successful poll.

Every day is deterministic (no random numbers): a day's posts are its threads, one
every 40 minutes from 06:00, then its replies, a few minutes after their thread,
each thread answered at least once; post ``i`` of the day is by author ``i % A`` of
a pool that shifts a little each day, so a day has exactly ``A`` participants.
Volumes stay inside one poll: the Reddit adapter reads at most 10 pages of 100 per
endpoint, the Discourse adapter 20 pages of 50 per poll.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86400
HISTORY_DAYS = 60
DECLINE_DAYS = 10
AUTHOR_POOL = 40

PRAISE = ("Thanks, this is great", "Great community")
COMPLAINT = ("Another pay cut this week", "This is awful")
NEUTRAL = ("Welcome aboard", "Same here")


@dataclass(frozen=True)
class DayPlan:
    threads: int
    replies: int
    authors: int
    texts: tuple[str, str]
    """Text of the thread starts and of the replies."""


@dataclass(frozen=True)
class Post:
    created: int
    thread: int
    """Index of the thread within its day."""
    is_thread: bool
    author: str
    text: str


def weekend(day: int) -> bool:
    return datetime.fromtimestamp(day, UTC).weekday() >= 5


def declining_plan(day: int, *, today: int) -> DayPlan:
    if today - day <= (DECLINE_DAYS - 1) * DAY:  # the last 10 complete days and today
        return DayPlan(3, 4, 4, COMPLAINT) if weekend(day) else DayPlan(4, 6, 6, COMPLAINT)
    return DayPlan(5, 8, 8, PRAISE) if weekend(day) else DayPlan(8, 12, 12, PRAISE)


def steady_plan(day: int, *, today: int) -> DayPlan:
    return DayPlan(4, 5, 7, NEUTRAL) if weekend(day) else DayPlan(6, 8, 10, NEUTRAL)


def offline_plan(day: int, *, today: int) -> DayPlan:
    return DayPlan(2, 2, 3, NEUTRAL) if weekend(day) else DayPlan(3, 3, 5, NEUTRAL)


def day_posts(day: int, plan: DayPlan, *, prefix: str) -> list[Post]:
    shift = (day // DAY) % AUTHOR_POOL

    def author(index: int) -> str:
        return f"{prefix}{(shift + index % plan.authors) % AUTHOR_POOL}"

    posts = []
    for thread in range(plan.threads):
        posts.append(Post(day + 6 * 3600 + thread * 2400, thread, True, "", plan.texts[0]))
    for reply in range(plan.replies):
        thread = reply % plan.threads
        created = day + 6 * 3600 + thread * 2400 + 300 * (1 + reply // plan.threads)
        posts.append(Post(created, thread, False, "", plan.texts[1]))
    return [
        Post(p.created, p.thread, p.is_thread, author(index), p.text)
        for index, p in enumerate(posts)
    ]


def history(plan_of: Callable[..., DayPlan], *, now: int, prefix: str) -> Iterator[list[Post]]:
    """Each day's posts, oldest day first, from day -59 to today (posts before ``now`` only)."""
    today = now - now % DAY
    for back in range(HISTORY_DAYS - 1, -1, -1):
        day = today - back * DAY
        plan = plan_of(day, today=today)
        posts = [p for p in day_posts(day, plan, prefix=prefix) if p.created < now - 120]
        yield sorted(posts, key=lambda p: (p.created, not p.is_thread))
