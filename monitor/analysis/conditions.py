"""What is out of line for a community right now: the alert rules' conditions, on a snapshot.

The status page and the API show the same conditions that
``deploy/prometheus/rules/forum-monitor.yml`` alerts on, evaluated here as pure
functions of a ``CommunitySnapshot`` (no ``for:`` durations: a condition shows
as soon as it holds). The thresholds below are the rules' numbers; a test reads
the rules file and fails if either side changes alone.

As in the rules, every community condition needs the community to be trusted
(7-day coverage >= 90%, the last poll succeeded and is fresh), so an outage
shows as the source being down, never as a decline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from monitor.analysis.snapshot import CommunitySnapshot

PARTICIPATION_DROP_RATIO = 0.75
"""ForumParticipationDrop: active participants, 7d change ratio below this."""
ACTIVITY_DROP_RATIO = 0.75
"""ForumActivityDrop: posts, 7d change ratio below this."""
SENTIMENT_DROP = 0.1
"""ForumSentimentDrop: 7d mean sentiment at least this far below the 28d mean ..."""
SENTIMENT_MIN_POSTS = 20
"""... with at least this many posts in 7 days."""
UNANSWERED_SURGE = 0.15
"""ForumUnansweredSurge: 7d unanswered share more than this above the 28d share ..."""
UNANSWERED_MIN_THREADS = 10
"""... with at least this many threads started in 7 days."""
CHANGEPOINT_SHIFT_RATIO = 0.85
"""ForumChangePointDetected: a level shift down to under this ratio ..."""
CHANGEPOINT_MAX_AGE_DAYS = 28
"""... with its onset in the last this many days."""
SOURCE_DOWN_INTERVALS = 3
"""ForumSourceDown: no successful poll for more than this many poll intervals."""
TRUSTED_COVERAGE = 0.9
"""community_source:forum_coverage_ratio_7d:trusted: 7d coverage at least this."""
DECLINE_SCORE_THRESHOLD = 1.0
"""ForumDeclineDetected: forum_decline_score above this (monitor/analysis/cusum.py)."""
DECLINE_SCORE_SIGNALS = ("posts", "active_participants")
GROWTH_RATIO = 1.25
"""Not an alert: the status page calls a 7d change ratio at or above this "growing"."""

Severity = Literal["critical", "warning", "info"]
Verdict = Literal["down", "declining", "growing", "steady", "warming up"]
DECLINE_ALERTS = frozenset(
    {
        "ForumParticipationDrop",
        "ForumActivityDrop",
        "ForumSentimentDrop",
        "ForumUnansweredSurge",
        "ForumChangePointDetected",
        "ForumDeclineDetected",
    }
)


@dataclass(frozen=True)
class Condition:
    """One alert rule's condition that holds now, in words."""

    alert: str
    severity: Severity
    summary: str


def _ratio(snapshot: CommunitySnapshot, signal: str, window: str = "7d") -> float | None:
    for trend in snapshot.trends:
        if trend.signal == signal and trend.window == window:
            return trend.ratio
    return None


def source_conditions(snapshot: CommunitySnapshot, *, interval: float, now: int) -> list[Condition]:
    """ForumSourceDown and ForumSourceNeverSucceeded."""
    if snapshot.last_success_at is None:
        if snapshot.last_error is None:
            return []  # not polled yet
        return [
            Condition(
                "ForumSourceNeverSucceeded",
                "critical",
                f"no successful poll yet: {snapshot.last_error}",
            )
        ]
    age = now - snapshot.last_success_at
    if age > SOURCE_DOWN_INTERVALS * interval:
        return [
            Condition(
                "ForumSourceDown",
                "critical",
                f"no successful poll for {describe_duration(age)} (over {SOURCE_DOWN_INTERVALS} "
                "poll intervals)",
            )
        ]
    return []


def trusted(snapshot: CommunitySnapshot, *, interval: float, now: int) -> bool:
    """The rules' gate: 7d coverage >= 90%, last poll succeeded, and it is fresh."""
    return (
        snapshot.coverage.get("7d", 0.0) >= TRUSTED_COVERAGE
        and snapshot.last_error is None
        and snapshot.last_success_at is not None
        and now - snapshot.last_success_at <= SOURCE_DOWN_INTERVALS * interval
    )


def community_conditions(snapshot: CommunitySnapshot, *, now: int) -> list[Condition]:
    """The decline rules, without the trust gate (see ``out_of_line``)."""
    found: list[Condition] = []
    participants = _ratio(snapshot, "active_participants")
    if participants is not None and participants < PARTICIPATION_DROP_RATIO:
        found.append(
            Condition(
                "ForumParticipationDrop",
                "warning",
                f"active participants at {participants:.0%} of their 4-week baseline (7 days)",
            )
        )
    posts = _ratio(snapshot, "posts")
    if posts is not None and posts < ACTIVITY_DROP_RATIO:
        found.append(
            Condition(
                "ForumActivityDrop",
                "warning",
                f"posts at {posts:.0%} of their 4-week baseline (7 days)",
            )
        )
    week, month = snapshot.windows.get("7d"), snapshot.windows.get("28d")
    if week is not None and month is not None:
        if (
            week.sentiment_mean is not None
            and month.sentiment_mean is not None
            and week.sentiment_mean - month.sentiment_mean < -SENTIMENT_DROP
            and week.posts >= SENTIMENT_MIN_POSTS
        ):
            found.append(
                Condition(
                    "ForumSentimentDrop",
                    "warning",
                    f"mood dropped: 7-day mean sentiment {week.sentiment_mean:+.2f} against "
                    f"{month.sentiment_mean:+.2f} over 28 days",
                )
            )
        if (
            week.unanswered_threads_ratio is not None
            and month.unanswered_threads_ratio is not None
            and week.unanswered_threads_ratio - month.unanswered_threads_ratio > UNANSWERED_SURGE
            and week.threads_started >= UNANSWERED_MIN_THREADS
        ):
            found.append(
                Condition(
                    "ForumUnansweredSurge",
                    "warning",
                    f"{week.unanswered_threads_ratio:.0%} of threads unanswered in 7 days "
                    f"against {month.unanswered_threads_ratio:.0%} over 28 days",
                )
            )
    for point in snapshot.changepoints:
        recent = now - point.onset < CHANGEPOINT_MAX_AGE_DAYS * 86400
        if point.shift_ratio < CHANGEPOINT_SHIFT_RATIO and recent:
            found.append(
                Condition(
                    "ForumChangePointDetected",
                    "info",
                    f"{point.signal} shifted to {point.shift_ratio:.0%} of its previous level "
                    f"{describe_duration(now - point.onset)} ago",
                )
            )
    return found


def score_conditions(snapshot: CommunitySnapshot) -> list[Condition]:
    """ForumDeclineDetected. Not behind the trust gate, as in the rules: the analysis
    stage already withholds the score while coverage is low."""
    return [
        Condition(
            "ForumDeclineDetected",
            "warning",
            f"{decline.signal} in decline since {describe_day(decline.onset)} "
            f"(score {decline.score:.1f}; above {DECLINE_SCORE_THRESHOLD:g} is a decline)",
        )
        for decline in snapshot.declines
        if decline.signal in DECLINE_SCORE_SIGNALS and decline.score > DECLINE_SCORE_THRESHOLD
    ]


def describe_day(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def out_of_line(snapshot: CommunitySnapshot, *, interval: float, now: int) -> list[Condition]:
    """Every condition that holds now: source problems, decline scores, and (when
    trusted) the other decline rules."""
    problems = source_conditions(snapshot, interval=interval, now=now)
    problems += score_conditions(snapshot)
    if not trusted(snapshot, interval=interval, now=now):
        return problems
    return problems + community_conditions(snapshot, now=now)


def verdict(
    snapshot: CommunitySnapshot, conditions: list[Condition], *, interval: float, now: int
) -> Verdict:
    """One word for the status page: down, declining, growing, steady or warming up."""
    if any(c.severity == "critical" for c in conditions):
        return "down"
    if any(c.alert in DECLINE_ALERTS for c in conditions):
        return "declining"
    if not trusted(snapshot, interval=interval, now=now):
        return "warming up"
    ratios = [_ratio(snapshot, s) for s in ("posts", "active_participants")]
    known = [r for r in ratios if r is not None]
    if not known:
        return "warming up"
    if any(r >= GROWTH_RATIO for r in known):
        return "growing"
    return "steady"


def describe_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
