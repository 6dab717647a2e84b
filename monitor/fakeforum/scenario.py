"""Simulated community histories for the fake forums, and a live poster that keeps them going.

A ``CommunityPlan`` describes one community: base daily rates of threads,
replies and distinct participants, a weekly rhythm, a mood (shares of
positive, neutral and negative posts), keyword-group shares and, optionally,
an ``Event``: a labelled day after which those quantities move towards new
levels (part of the effect at once, the rest over ``ramp_days``).

``history`` turns a plan into posts, a pure function of (plan, now, days,
seed): the same inputs give the same posts. Daily counts follow the plan with
a little noise; sentiment and keyword mentions are laid out by quota each day
(not drawn post by post), so a 7-day mean follows the plan closely and a
steady community stays steady. Texts come from small pools whose VADER
compound score is positive (> 0.05), neutral (0) or negative (< -0.05); a test
keeps them so.

``Simulation`` loads histories into ``FakeReddit`` / ``FakeDiscourse`` behind
one ``FakeForumServer`` on 127.0.0.1; ``LivePoster`` adds posts in real time
at the plan's current rate times a speed-up.

Volumes: the Reddit adapter's first poll pages at most 10 pages of 100 per
listing, the Discourse one 20 pages of 50 posts; plans meant to be backfilled
in one poll stay under those (see ``DEMO_PLANS``).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from monitor.fakeforum.discourse import FakeDiscourse
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, Router

DAY = 86_400
Mood = Literal["positive", "neutral", "negative"]
MOODS: tuple[Mood, ...] = ("positive", "neutral", "negative")

TEXTS: dict[Mood, tuple[str, ...]] = {
    "positive": (
        "Thanks everyone, this community is great",
        "Got my first task approved, really happy",
        "Great tips in this thread, thank you",
        "Love the new project, the work is fun",
        "Helpful answer, much appreciated",
        "Nice to see so many friendly people here",
        "Good week, steady work and fair reviews",
        "Welcome aboard, glad you joined",
    ),
    "neutral": (
        "Which time zone do the tasks follow?",
        "Is there a queue for new projects today?",
        "Posting the weekly schedule thread",
        "How long does a review usually take?",
        "Anyone else on the evening shift?",
        "Question about the tax form",
        "Where do I find the project guidelines?",
        "Update on the task dashboard",
    ),
    "negative": (
        "This is awful, nothing works anymore",
        "Support ignored my ticket again, so frustrating",
        "Terrible week, tasks vanished and no answers",
        "I hate how reviews are handled now",
        "Really disappointed with the platform lately",
        "Another bad update, everything is broken",
        "Worst experience so far, thinking of leaving",
        "Angry and tired of the constant problems",
    ),
}
"""General texts by VADER class."""

KEYWORD_TEXTS: dict[str, dict[Mood, tuple[str, ...]]] = {
    "pay": {
        "positive": ("Got my payment on time, great rate this week",),
        "neutral": ("When does payment usually arrive?", "Which day is payment sent out?"),
        "negative": (
            "The pay cut is awful, the rate dropped again",
            "Underpaid and ignored, the new pay rate is terrible",
            "Payment is late again, this is unacceptable",
            "Lower pay per hour and nobody explains why, disappointing",
        ),
    },
    "onboarding": {
        "positive": ("The onboarding was clear and helpful, thanks",),
        "neutral": ("How long is the onboarding for the new project?",),
        "negative": (
            "Unpaid onboarding for a week, this is ridiculous",
            "Failed the onboarding assessment with no feedback, frustrating",
            "The new onboarding is a waste of time, unpaid again",
        ),
    },
}
"""Texts that mention a keyword group (``DEMO_KEYWORDS``), by VADER class."""

RIVAL_NAME = "Taskhive"
"""The rival platform members of the gig-work community talk of moving to."""

NEW_WORDING_TEXTS: dict[str | None, tuple[str, ...]] = {
    None: (
        f"Thinking of moving to {RIVAL_NAME}, this is awful",
        f"Half the regulars left for {RIVAL_NAME}, so sad",
    ),
    "pay": (
        f"Underpaid since the tier change, this is bad, moving to {RIVAL_NAME}",
        f"The tier change cut my rate again, awful, switching to {RIVAL_NAME}",
    ),
    "onboarding": (
        f"Stuck in the onboarding backlog, terrible, trying {RIVAL_NAME} instead",
        f"Onboarding backlog again and still unpaid, so frustrating, {RIVAL_NAME} it is",
    ),
}
"""Negative texts (by keyword group, None for none) in the wording that spreads some weeks
after the event: the pay "tier change", the "onboarding backlog" and the rival's name, the
demo's rising terms."""
NEW_WORDING_RAMP_DAYS = 7

DEMO_KEYWORDS: dict[str, list[str]] = {
    "pay": ["pay cut", "pay rate", "payment", "per hour", "underpaid", "rate"],
    "onboarding": ["onboarding", "assessment"],
}


@dataclass(frozen=True)
class MoodMix:
    """Shares of positive and negative posts; the rest are neutral."""

    positive: float
    negative: float

    def shares(self) -> dict[Mood, float]:
        return {
            "positive": self.positive,
            "neutral": max(0.0, 1.0 - self.positive - self.negative),
            "negative": self.negative,
        }


@dataclass(frozen=True)
class Event:
    """A labelled day after which a community's levels move to ``factor``-times their base."""

    days_ago: int
    label: str
    threads: float = 1.0
    replies: float = 1.0
    participants: float = 1.0
    mood: MoodMix | None = None
    """The mood at the full effect (None: unchanged)."""
    keywords: Mapping[str, float] = field(default_factory=dict)
    """Keyword-group shares of posts at the full effect."""
    step: float = 0.5
    """Share of the activity effect that happens on the event day; the rest ramps in."""
    mood_step: float = 0.2
    """The same for mood and keyword shares (moods sour gradually)."""
    ramp_days: int = 30
    new_wording_from: int | None = None
    """Days after the event from which negative posts take up ``NEW_WORDING_TEXTS``: none
    then, all of them ``NEW_WORDING_RAMP_DAYS`` later."""

    def progress(self, days_after: float, *, step: float) -> float:
        """0 before the event, ``step`` on its day, 1 after ``ramp_days``."""
        if days_after < 0:
            return 0.0
        return step + (1.0 - step) * min(1.0, days_after / self.ramp_days)


@dataclass(frozen=True)
class Newcomers:
    """Members of another plan on the same platform who post here from this plan's event on,
    under the same names (so participant flows can link them): the ones numbered ``first``
    to ``first + count - 1`` there take the places this plan's growth opens."""

    plan_id: str
    first: int
    count: int


@dataclass(frozen=True)
class CommunityPlan:
    id: str
    title: str
    source: Literal["reddit", "discourse"]
    forum: str
    """The subreddit (reddit) or the forum's path prefix on the fake server (discourse)."""
    threads_per_day: float
    replies_per_day: float
    participants_per_day: float
    mood: MoodMix
    keywords: Mapping[str, float] = field(default_factory=dict)
    unanswered_share: float = 0.05
    weekend_factor: float = 0.75
    noise: float = 0.08
    """Relative standard deviation of the daily counts."""
    event: Event | None = None
    newcomers: Newcomers | None = None


@dataclass(frozen=True)
class Level:
    """A plan's expected levels on one day."""

    threads: float
    replies: float
    participants: float
    mood: dict[Mood, float]
    keywords: dict[str, float]
    new_wording: float = 0.0
    """Chance that a negative post uses ``NEW_WORDING_TEXTS``."""


def level(plan: CommunityPlan, *, day: int, now: int) -> Level:
    """Expected levels on the UTC day starting at ``day``, weekly rhythm included."""
    weekday = datetime.fromtimestamp(day, UTC).weekday()
    season = plan.weekend_factor if weekday >= 5 else 1.0
    activity = mood_progress = new_wording = 0.0
    event = plan.event
    if event is not None:
        days_after = (day - event_day(event, now=now)) / DAY
        activity = event.progress(days_after, step=event.step)
        mood_progress = event.progress(days_after, step=event.mood_step)
        if event.new_wording_from is not None:
            ramp = (days_after - event.new_wording_from) / NEW_WORDING_RAMP_DAYS
            new_wording = min(1.0, max(0.0, ramp))

    def moved(base: float, factor: float, progress: float) -> float:
        return base * (1.0 + (factor - 1.0) * progress)

    mood = plan.mood.shares()
    keywords = dict(plan.keywords)
    threads, replies, participants = 1.0, 1.0, 1.0
    if event is not None:
        threads, replies, participants = event.threads, event.replies, event.participants
        if event.mood is not None:
            target = event.mood.shares()
            mood = {m: mood[m] + (target[m] - mood[m]) * mood_progress for m in MOODS}
        for group, share in event.keywords.items():
            start = keywords.get(group, 0.0)
            keywords[group] = start + (share - start) * mood_progress
    return Level(
        threads=season * moved(plan.threads_per_day, threads, activity),
        replies=season * moved(plan.replies_per_day, replies, activity),
        participants=season * moved(plan.participants_per_day, participants, activity),
        mood=mood,
        keywords=keywords,
        new_wording=new_wording,
    )


def event_day(event: Event, *, now: int) -> int:
    """UTC midnight of the event's day."""
    return (now // DAY - event.days_ago) * DAY


@dataclass
class SimPost:
    """One generated post; ``thread`` is the index of its thread start in the history."""

    index: int
    created: int
    author: str
    text: str
    title: str = ""
    thread: int | None = None


def _count(rng: random.Random, expected: float, noise: float) -> int:
    return max(0, round(expected * (1.0 + rng.gauss(0.0, noise))))


def _by_quota(rng: random.Random, total: int, shares: Mapping[str, float]) -> list[str | None]:
    """``total`` labels laid out by quota (largest remainders), shuffled; None fills the rest."""
    exact = {name: share * total for name, share in shares.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    wanted = min(total, round(sum(exact.values())))
    for name in sorted(exact, key=lambda n: exact[n] - counts[n], reverse=True):
        if sum(counts.values()) >= wanted:
            break
        counts[name] += 1
    labels: list[str | None] = [name for name, n in counts.items() for _ in range(n)]
    labels += [None] * (total - len(labels))
    rng.shuffle(labels)
    return labels


def pick_text(rng: random.Random, mood: Mood, group: str | None, new_wording: float = 0.0) -> str:
    if new_wording > 0 and mood == "negative" and group in NEW_WORDING_TEXTS:
        if rng.random() < new_wording:
            return rng.choice(NEW_WORDING_TEXTS[group])
    if group is not None and group in KEYWORD_TEXTS:
        pool = KEYWORD_TEXTS[group].get(mood) or KEYWORD_TEXTS[group]["neutral"]
        return rng.choice(pool)
    return rng.choice(TEXTS[mood])


def author_name(plan: CommunityPlan, number: int) -> str:
    return f"{plan.id}_member_{number:04d}"


def member_name(plan: CommunityPlan, number: int, *, day: int, now: int) -> str:
    """The name of member ``number`` on ``day``: from the plan's event on, the places beyond
    its base pool go to its newcomers (``Newcomers``) first."""
    joined, event = plan.newcomers, plan.event
    if joined is not None and event is not None and day >= event_day(event, now=now):
        extra = number - round(3 * plan.participants_per_day)
        if 0 <= extra < joined.count:
            return f"{joined.plan_id}_member_{joined.first + extra:04d}"
    return author_name(plan, number)


def history(plan: CommunityPlan, *, now: int, days: int, seed: int) -> list[SimPost]:
    """Posts of the ``days`` days before ``now`` (and of today so far), oldest first."""
    rng = random.Random(f"{seed}:{plan.id}")
    posts: list[SimPost] = []
    first_day = (now // DAY - days) * DAY
    for day in range(first_day, now + 1, DAY):
        posts.extend(_one_day(plan, rng, day=day, now=now, start_index=len(posts)))
    posts.sort(key=lambda p: (p.created, p.index))
    return posts


def _one_day(
    plan: CommunityPlan, rng: random.Random, *, day: int, now: int, start_index: int
) -> list[SimPost]:
    expected = level(plan, day=day, now=now)
    n_threads = _count(rng, expected.threads, plan.noise)
    n_replies = _count(rng, expected.replies, plan.noise)
    total = n_threads + n_replies
    n_people = min(total, max(1 if total else 0, _count(rng, expected.participants, plan.noise)))
    pool = max(n_people, round(3 * expected.participants))
    people = rng.sample(range(pool), n_people)
    authors = people + [rng.choice(people) for _ in range(total - n_people)]
    rng.shuffle(authors)
    moods = _by_quota(rng, total, {str(m): share for m, share in expected.mood.items()})
    groups = _by_quota(rng, total, expected.keywords)
    day_posts: list[SimPost] = []
    thread_starts = sorted(rng.uniform(0, DAY - 3600) for _ in range(n_threads))
    for number, offset in enumerate(thread_starts):
        mood: Mood = moods[number] or "neutral"  # type: ignore[assignment]
        text = pick_text(rng, mood, groups[number], expected.new_wording)
        day_posts.append(
            SimPost(
                start_index + number,
                int(day + offset),
                member_name(plan, authors[number], day=day, now=now),
                text,
                title=text,
            )
        )
    threads = list(day_posts)
    silent = set(rng.sample(range(len(threads)), round(plan.unanswered_share * len(threads))))
    answered = [t for i, t in enumerate(threads) if i not in silent] or threads
    for number in range(n_threads, total):
        if not answered:
            break
        # every answered thread gets a first reply before any gets a second
        k = number - n_threads
        thread = answered[k] if k < len(answered) else rng.choice(answered)
        delay = rng.uniform(600, 6 * 3600) if k < len(answered) else rng.uniform(1800, 20 * 3600)
        mood = moods[number] or "neutral"  # type: ignore[assignment]
        day_posts.append(
            SimPost(
                start_index + number,
                thread.created + int(delay),
                member_name(plan, authors[number], day=day, now=now),
                pick_text(rng, mood, groups[number], expected.new_wording),
                thread=thread.index,
            )
        )
    return [p for p in day_posts if p.created < now]


DEMO_EVENT_DAYS_AGO = 30
DEMO_EVENT = "Platform cut pay rates and made onboarding unpaid"

DEMO_PLANS: tuple[CommunityPlan, ...] = (
    CommunityPlan(
        id="gigwork",
        title="Gig-work community (simulated)",
        source="reddit",
        forum="gigwork_demo",
        threads_per_day=5,
        replies_per_day=8,
        participants_per_day=9,
        mood=MoodMix(positive=0.45, negative=0.15),
        keywords={"pay": 0.05, "onboarding": 0.03},
        event=Event(
            days_ago=DEMO_EVENT_DAYS_AGO,
            label=DEMO_EVENT,
            threads=0.45,
            replies=0.3,
            participants=0.3,
            mood=MoodMix(positive=0.05, negative=0.8),
            step=0.35,
            mood_step=0.1,
            keywords={"pay": 0.35, "onboarding": 0.2},
            new_wording_from=DEMO_EVENT_DAYS_AGO - 10,
        ),
    ),
    CommunityPlan(
        id="rival",
        title="Rival platform's forum (simulated)",
        source="discourse",
        forum="/rival",
        threads_per_day=3,
        replies_per_day=3,
        participants_per_day=4,
        mood=MoodMix(positive=0.4, negative=0.12),
        keywords={"pay": 0.04, "onboarding": 0.04},
        event=Event(
            days_ago=DEMO_EVENT_DAYS_AGO,
            label="Newcomers arrive from the gig-work community",
            threads=2.0,
            replies=2.2,
            participants=2.2,
            step=0.1,
        ),
    ),
    CommunityPlan(
        id="rivalsub",
        title="A rival platform's subreddit (simulated)",
        source="reddit",
        forum="rivalwork_demo",
        threads_per_day=2,
        replies_per_day=3,
        participants_per_day=3,
        mood=MoodMix(positive=0.45, negative=0.1),
        keywords={"pay": 0.04},
        event=Event(
            days_ago=DEMO_EVENT_DAYS_AGO,
            label="Members of the gig-work subreddit join",
            threads=2.0,
            replies=2.2,
            participants=3.0,
            step=0.5,
        ),
        # six of the gig-work members who fall silent after its event (its pool shrinks
        # from 27 members to about 8) post here instead, under the same Reddit names
        newcomers=Newcomers(plan_id="gigwork", first=20, count=6),
    ),
    CommunityPlan(
        id="control",
        title="Steady control community (simulated)",
        source="reddit",
        forum="steady_demo",
        threads_per_day=5,
        replies_per_day=7,
        participants_per_day=8,
        mood=MoodMix(positive=0.4, negative=0.15),
        keywords={"pay": 0.03},
    ),
)
"""The demo's four communities; each 120-day history fits one first poll."""


class Simulation:
    """Fake forums for ``plans`` on one 127.0.0.1 server, loaded with their histories."""

    def __init__(self, plans: tuple[CommunityPlan, ...] = DEMO_PLANS, *, port: int = 0) -> None:
        self.plans = {plan.id: plan for plan in plans}
        self.reddit = FakeReddit(rate_budget=1_000_000)
        self.discourse: dict[str, FakeDiscourse] = {}
        router = Router()
        self.reddit.register(router)
        for plan in plans:
            if plan.source == "discourse":
                forum = FakeDiscourse(prefix=plan.forum)
                forum.register(router)
                self.discourse[plan.id] = forum
            else:
                self.reddit.add_subreddit(plan.forum)
        self.server = FakeForumServer(router, port=port)
        self._threads: dict[str, list[str | int]] = {plan.id: [] for plan in plans}
        self._lock = threading.Lock()
        self.posts_added = 0

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self) -> Simulation:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def load_history(self, *, now: int, days: int, seed: int) -> int:
        """Generate and add every plan's history; returns the number of posts."""
        added = 0
        for plan in self.plans.values():
            handles: dict[int, str | int] = {}
            for post in history(plan, now=now, days=days, seed=seed):
                if post.thread is None:
                    handles[post.index] = self.add_thread(plan, post)
                elif post.thread in handles:
                    self.add_reply(plan, handles[post.thread], post)
                added += 1
        return added

    def add_thread(self, plan: CommunityPlan, post: SimPost) -> str | int:
        """Add a thread start; returns the handle replies use (fullname or topic id)."""
        if plan.source == "reddit":
            handle: str | int = self.reddit.add_thread(
                plan.forum, created=post.created, author=post.author, title=post.title
            )
        else:
            handle = (
                self.discourse[plan.id]
                .add_thread(title=post.title, author=post.author, created_at=post.created)
                .topic_id
            )
        with self._lock:
            self._threads[plan.id].append(handle)
            self.posts_added += 1
        return handle

    def add_reply(self, plan: CommunityPlan, thread: str | int, post: SimPost) -> None:
        if plan.source == "reddit":
            self.reddit.add_reply(
                str(thread), created=post.created, author=post.author, text=post.text
            )
        else:
            self.discourse[plan.id].add_reply(
                topic_id=int(thread), author=post.author, created_at=post.created, text=post.text
            )
        with self._lock:
            self.posts_added += 1

    def recent_threads(self, plan_id: str, count: int = 10) -> list[str | int]:
        with self._lock:
            return list(self._threads[plan_id][-count:])

    def base_url_for(self, plan: CommunityPlan) -> str:
        return self.base_url + (plan.forum if plan.source == "discourse" else "")


class LivePoster:
    """Keeps the simulated communities posting at ``speed`` times their plans' current rate.

    Posts are timestamped with the real clock; a background thread, stopped by ``stop``.
    """

    def __init__(self, simulation: Simulation, *, speed: float, seed: int, now0: int) -> None:
        self.simulation = simulation
        self.speed = speed
        self.now0 = now0
        self._rng = random.Random(f"{seed}:live")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-live-poster", daemon=True)
        self.posted = 0

    def start(self) -> LivePoster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = int(time.time())
            levels = {
                plan_id: level(plan, day=now // DAY * DAY, now=self.now0)
                for plan_id, plan in self.simulation.plans.items()
            }
            per_second = sum(lv.threads + lv.replies for lv in levels.values()) / DAY * self.speed
            wait = self._rng.expovariate(per_second) if per_second > 0 else 60.0
            if self._stop.wait(min(wait, 60.0)):
                return
            if per_second > 0:
                self.post_one(levels, now=int(time.time()))

    def post_one(self, levels: Mapping[str, Level], *, now: int) -> None:
        """Add one post to a community chosen by its share of the current activity."""
        rng = self._rng
        ids = list(levels)
        weights = [levels[i].threads + levels[i].replies for i in ids]
        plan = self.simulation.plans[rng.choices(ids, weights)[0]]
        current = levels[plan.id]
        mood: Mood = rng.choices(MOODS, [current.mood[m] for m in MOODS])[0]
        group = None
        for name, share in current.keywords.items():
            if rng.random() < share:
                group = name
        text = pick_text(rng, mood, group, current.new_wording)
        number = rng.randrange(max(1, round(3 * current.participants)))
        author = member_name(plan, number, day=now // DAY * DAY, now=self.now0)
        post = SimPost(index=-1, created=now, author=author, text=text, title=text)
        recent = self.simulation.recent_threads(plan.id)
        share_threads = current.threads / max(1e-9, current.threads + current.replies)
        if not recent or rng.random() < share_threads:
            self.simulation.add_thread(plan, post)
        else:
            self.simulation.add_reply(plan, rng.choice(recent), post)
        self.posted += 1
