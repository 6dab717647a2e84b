"""End to end: fake forums -> the service -> Prometheus (rules) -> Alertmanager -> a webhook.

The scenario (tests/e2e/scenario.py) gives one community whose participation halves
and whose mood sours over its last 10 days, a steady control, and one whose forum
goes down (503) right after its first successful poll. The service polls every 2 s;
Prometheus scrapes and evaluates every second with the deployed rules at test-sized
``for:`` durations; Alertmanager runs the deployed routing with second-sized waits.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

from grafana.panel_queries import all_queries
from monitor.analysis.rollups import DAY, day_of
from tests.e2e.conftest import (
    Processes,
    Stack,
    binary,
    prometheus_config,
    start_prometheus,
    wait_for,
)

pytestmark = pytest.mark.e2e

COMMUNITIES = ("declining", "steady", "offline")
DECLINE_ALERTS = {
    "ForumParticipationDrop",
    "ForumActivityDrop",
    "ForumSentimentDrop",
    "ForumUnansweredSurge",
    "ForumChangePointDetected",
}


def communities_in(result: list[dict[str, Any]]) -> set[str]:
    return {series["metric"].get("community", "") for series in result}


def panel_failures(stack: Stack) -> list[str]:
    """Non-conditional panel queries that return nothing (every query must execute)."""
    failures = []
    seen: set[str] = set()
    end = time.time()
    for community in COMMUNITIES:
        for query in all_queries(variables={"community": community}):
            if query.expr in seen:
                continue
            seen.add(query.expr)
            result = stack.prometheus.query(query.expr)  # asserts the query executes
            if not query.instant:
                stack.prometheus.query_range(query.expr, start=end - 60, end=end, step=5)
            if not result and not query.conditional:
                failures.append(f"{query.dashboard} / {query.panel} [{query.ref_id}]: {query.expr}")
    return failures


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    prometheus = stack.prometheus
    wait_for(
        "every community's gauges in Prometheus",
        lambda: communities_in(prometheus.query('forum_posts{window="7d"}')) >= set(COMMUNITIES),
        timeout=60,
    )
    failures: list[str] = []

    def all_answer() -> bool:
        failures[:] = panel_failures(stack)
        return not failures

    try:
        # rate()s over [1m] need two scrapes of a series; give them a few seconds (a check
        # runs every query, and took half of the 30 s once allowed on a loaded machine)
        wait_for("every panel query to return data", all_answer, timeout=60, every=2)
    except AssertionError:
        pytest.fail("panel queries without data:\n" + "\n".join(failures))


def test_participation_drop_alerts_only_the_declining_community(stack: Stack) -> None:
    webhook = stack.webhook
    wait_for(
        "ForumParticipationDrop for declining at the webhook",
        lambda: "declining" in webhook.received(alertname="ForumParticipationDrop"),
        timeout=60,
    )
    ratios = {
        series["metric"]["community"]: float(series["value"][1])
        for series in stack.prometheus.query(
            'forum_activity_change_ratio{signal="active_participants", window="7d"}'
        )
    }
    assert ratios["declining"] == pytest.approx(0.5, abs=0.05)
    assert ratios["steady"] == pytest.approx(1.0, abs=0.01)
    firing = communities_in(stack.prometheus.query('ALERTS{alertname="ForumParticipationDrop"}'))
    assert firing == {"declining"}
    assert webhook.received(alertname="ForumParticipationDrop") == {"declining"}
    assert not DECLINE_ALERTS & {name for name, _ in stack.prometheus.alerts("steady")}


def test_source_down_fires_for_the_offline_community_and_no_decline(stack: Stack) -> None:
    webhook = stack.webhook
    wait_for(
        "ForumSourceDown for offline at the webhook",
        lambda: "offline" in webhook.received(alertname="ForumSourceDown"),
        timeout=60,
    )
    assert webhook.received(alertname="ForumSourceDown") == {"offline"}
    assert not stack.prometheus.query(
        'community_source:forum_coverage_ratio_7d:trusted{community="offline"}'
    ), "the trust gate must close while the source is down"
    for name in DECLINE_ALERTS:
        assert "offline" not in webhook.received(alertname=name), name
    assert not DECLINE_ALERTS & {name for name, _ in stack.prometheus.alerts("offline")}
    # the declining community keeps alerting meanwhile: the gate is per community
    assert "declining" in webhook.received(alertname="ForumParticipationDrop")


def store_daily(database: str, community: str) -> dict[int, tuple[int, int]]:
    """(posts, active participants) by day end, straight from daily_rollups."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT day, posts, active_participants FROM daily_rollups WHERE community_id = ?",
            (community,),
        ).fetchall()
    return {day + DAY: (posts, active) for day, posts, active in rows}


def test_exported_history_answers_60_day_range_queries(stack: Stack) -> None:
    promtool = binary("promtool")
    out = stack.workdir / "history.om"
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "export-openmetrics",
            "--config",
            str(stack.config),
            "--out",
            str(out),
            "--days",
            "60",
        ],
        capture_output=True,
        text=True,
        cwd=stack.workdir,
        timeout=120,
    )
    assert export.returncode == 0, export.stderr
    today = day_of(int(time.time()))
    blocks = stack.workdir / "history-tsdb"
    created = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(out), str(blocks)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    config = stack.workdir / "history-prometheus.yml"
    prometheus_config(config, rules=None, alertmanager=None, target=None)
    processes: Processes = stack.processes
    history = start_prometheus(
        processes, "prometheus-history", config=config, storage=blocks, retention="400d"
    )
    try:
        start, end = today - 59 * DAY, today  # the ends of days -60 .. -1: one sample each
        for community in COMMUNITIES:
            stored = store_daily(str(stack.database), community)
            for metric, column in (("forum_posts", 0), ("forum_active_participants", 1)):
                result = history.query_range(
                    f'{metric}{{community="{community}", window="1d"}}',
                    start=start,
                    end=end,
                    step=DAY,
                )
                assert len(result) == 1, (metric, community, result)
                points = {int(float(ts)): float(value) for ts, value in result[0]["values"]}
                assert len(points) >= 59, (metric, community, len(points))
                for ts, value in points.items():
                    expected = stored.get(ts, (0, 0))[column]
                    assert value == expected, (metric, community, ts, value, expected)
                if community == "declining":
                    assert points[end] < 0.6 * points[end - 14 * DAY]  # the decline is visible
        seven_day = history.query_range(
            'forum_posts{community="steady", window="7d"}', start=start, end=end, step=DAY
        )
        assert len(seven_day[0]["values"]) >= 59
    finally:
        processes.stop("prometheus-history")
