"""The status page's "out of line" conditions: the alert rules' thresholds, on snapshots."""

from __future__ import annotations

import re
from dataclasses import replace

from monitor.analysis import conditions as cond
from monitor.analysis.snapshot import ChangePointResult, CommunitySnapshot, DeclineResult, Trend
from monitor.analysis.windows import WindowActivity
from tests.support import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "forum-monitor.yml"
NOW = 1_717_243_200
INTERVAL = 300.0


def rule_exprs() -> dict[str, str]:
    """alert or record name -> its ``expr`` text (PyYAML is not a dependency: the rules
    file keeps one ``- alert:``/``- record:`` line per rule and a block ``expr: |``)."""
    exprs: dict[str, str] = {}
    name = None
    collecting: list[str] | None = None
    for line in RULES.read_text().splitlines():
        header = re.match(r"\s*- (?:alert|record): (\S+)", line)
        if header:
            name, collecting = header.group(1), None
            continue
        if name and re.match(r"\s*expr:", line):
            inline = line.split("expr:", 1)[1].strip()
            collecting = [] if inline == "|" else [inline]
            exprs[name] = ""
            if inline != "|":
                exprs[name] = inline
                collecting = None
            continue
        if collecting is not None and name:
            ended = re.match(r"\s*(for:|labels:|annotations:|- alert:|- record:)", line)
            if ended or not line.strip():
                collecting = None
            else:
                exprs[name] = (exprs[name] + " " + line.strip()).strip()
    return exprs


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return float(found.group(1))


def test_thresholds_equal_the_alert_rules() -> None:
    exprs = rule_exprs()
    participation = exprs["ForumParticipationDrop"]
    assert 'signal="active_participants", window="7d"' in participation
    assert number(r"\}\)? < ([\d.]+)", participation) == cond.PARTICIPATION_DROP_RATIO
    activity = exprs["ForumActivityDrop"]
    assert 'signal="posts", window="7d"' in activity
    assert number(r"\}\)? < ([\d.]+)", activity) == cond.ACTIVITY_DROP_RATIO
    sentiment = exprs["ForumSentimentDrop"]
    assert number(r"\) < -([\d.]+)", sentiment) == cond.SENTIMENT_DROP
    assert number(r'forum_posts\{window="7d"\}\)? >= (\d+)', sentiment) == cond.SENTIMENT_MIN_POSTS
    unanswered = exprs["ForumUnansweredSurge"]
    assert number(r"\) > ([\d.]+)", unanswered) == cond.UNANSWERED_SURGE
    assert (
        number(r'forum_threads_started\{window="7d"\}\)? >= (\d+)', unanswered)
        == cond.UNANSWERED_MIN_THREADS
    )
    changepoint = exprs["ForumChangePointDetected"]
    assert number(r"shift_ratio\)? < ([\d.]+)", changepoint) == cond.CHANGEPOINT_SHIFT_RATIO
    assert number(r"< (\d+) \* 86400", changepoint) == cond.CHANGEPOINT_MAX_AGE_DAYS
    down = exprs["ForumSourceDown"]
    assert (
        number(r"> (\d+) \* (?:max without \(instance\) \()?forum_monitor_poll_interval", down)
        == cond.SOURCE_DOWN_INTERVALS
    )
    gate = exprs["community_source:forum_coverage_ratio_7d:trusted"]
    assert number(r'forum_coverage_ratio\{window="7d"\}\)? >= ([\d.]+)', gate) == (
        cond.TRUSTED_COVERAGE
    )
    assert (
        number(r"> (\d+) \* (?:max without \(instance\) \()?forum_monitor_poll_interval", gate)
        == cond.SOURCE_DOWN_INTERVALS
    )
    score = exprs["ForumDeclineDetected"]
    assert number(r"\[3d\]\) > ([\d.]+)", score) == cond.DECLINE_SCORE_THRESHOLD
    assert "community_source_signal:forum_decline_score:max" in score
    recorded = exprs["community_source_signal:forum_decline_score:max"]
    assert f'signal=~"{"|".join(cond.DECLINE_SCORE_SIGNALS)}"' in recorded
    # the decline score is withheld by the analysis stage itself, not gated (see the rule)
    for name in cond.DECLINE_ALERTS - {"ForumDeclineDetected"}:
        assert "community_source:forum_coverage_ratio_7d:trusted" in exprs[name], name


def window(**changes: object) -> WindowActivity:
    base = WindowActivity(
        posts=100,
        threads_started=30,
        active_participants=40,
        new_participants=5,
        returning_participants_ratio=0.6,
        thread_participants_avg=2.0,
        thread_replies_avg=2.5,
        unanswered_threads_ratio=0.05,
        first_reply_median_seconds=1800.0,
        sentiment_mean=0.2,
        sentiment_negative_ratio=0.15,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def snapshot(**changes: object) -> CommunitySnapshot:
    base = CommunitySnapshot(
        community="c",
        source="reddit",
        computed_at=NOW,
        windows={"1d": window(), "7d": window(), "28d": window(posts=400)},
        coverage={"1d": 1.0, "7d": 1.0, "28d": 1.0},
        last_post_at=NOW - 60,
        last_success_at=NOW - 60,
        last_error=None,
        daily=[],
        trends=[Trend("posts", "7d", 1.0), Trend("active_participants", "7d", 1.0)],
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def alerts(snap: CommunitySnapshot) -> list[str]:
    return [c.alert for c in cond.out_of_line(snap, interval=INTERVAL, now=NOW)]


def test_steady_community_has_nothing_out_of_line() -> None:
    snap = snapshot()
    assert alerts(snap) == []
    assert cond.verdict(snap, [], interval=INTERVAL, now=NOW) == "steady"


def test_drops_just_under_and_at_the_threshold() -> None:
    under = snapshot(trends=[Trend("posts", "7d", 0.74), Trend("active_participants", "7d", 0.749)])
    assert alerts(under) == ["ForumParticipationDrop", "ForumActivityDrop"]
    at = snapshot(trends=[Trend("posts", "7d", 0.75), Trend("active_participants", "7d", 0.75)])
    assert alerts(at) == []
    found = cond.out_of_line(under, interval=INTERVAL, now=NOW)
    assert cond.verdict(under, found, interval=INTERVAL, now=NOW) == "declining"
    assert "74%" in found[1].summary


def test_sentiment_drop_needs_twenty_posts() -> None:
    soured = {"7d": window(sentiment_mean=0.05), "28d": window(sentiment_mean=0.2)}
    assert alerts(snapshot(windows=soured)) == ["ForumSentimentDrop"]
    quiet = {"7d": window(sentiment_mean=0.05, posts=19), "28d": window(sentiment_mean=0.2)}
    assert alerts(snapshot(windows=quiet)) == []
    slight = {"7d": window(sentiment_mean=0.11), "28d": window(sentiment_mean=0.2)}
    assert alerts(snapshot(windows=slight)) == []


def test_unanswered_surge_needs_ten_threads() -> None:
    surge = {"7d": window(unanswered_threads_ratio=0.3), "28d": window()}
    assert alerts(snapshot(windows=surge)) == ["ForumUnansweredSurge"]
    few = {"7d": window(unanswered_threads_ratio=0.3, threads_started=9), "28d": window()}
    assert alerts(snapshot(windows=few)) == []


def test_change_point_down_and_recent_only() -> None:
    recent = ChangePointResult("posts", NOW - 10 * 86400, 0.6)
    old = ChangePointResult("posts", NOW - 29 * 86400, 0.6)
    up = ChangePointResult("posts", NOW - 10 * 86400, 1.4)
    assert alerts(snapshot(changepoints=[recent])) == ["ForumChangePointDetected"]
    assert alerts(snapshot(changepoints=[old, up])) == []


def test_decline_score_above_one_on_posts_or_participants() -> None:
    onset = NOW - 5 * 86400
    assert alerts(snapshot(declines=[DeclineResult("active_participants", 1.3, onset)])) == [
        "ForumDeclineDetected"
    ]
    assert alerts(snapshot(declines=[DeclineResult("posts", 1.0, onset)])) == []
    assert alerts(snapshot(declines=[DeclineResult("sentiment_mean", 3.0, onset)])) == []


def test_an_outage_is_never_a_decline() -> None:
    declining = [Trend("posts", "7d", 0.3), Trend("active_participants", "7d", 0.3)]
    stale = snapshot(trends=declining, last_success_at=NOW - 3 * int(INTERVAL) - 1)
    found = cond.out_of_line(stale, interval=INTERVAL, now=NOW)
    assert [c.alert for c in found] == ["ForumSourceDown"]
    assert cond.verdict(stale, found, interval=INTERVAL, now=NOW) == "down"
    failing = snapshot(trends=declining, last_error="connect: connection refused")
    assert alerts(failing) == []
    gappy = snapshot(trends=declining, coverage={"1d": 1.0, "7d": 0.89, "28d": 1.0})
    assert alerts(gappy) == []
    assert cond.verdict(gappy, [], interval=INTERVAL, now=NOW) == "warming up"
    never = snapshot(last_success_at=None, last_error="http_4xx: 404 Not Found")
    found = cond.out_of_line(never, interval=INTERVAL, now=NOW)
    assert [c.alert for c in found] == ["ForumSourceNeverSucceeded"]
    assert "404 Not Found" in found[0].summary


def test_growth_and_missing_trends() -> None:
    growing = snapshot(trends=[Trend("posts", "7d", 1.3)])
    assert cond.verdict(growing, [], interval=INTERVAL, now=NOW) == "growing"
    young = snapshot(trends=[])
    assert cond.verdict(young, [], interval=INTERVAL, now=NOW) == "warming up"
