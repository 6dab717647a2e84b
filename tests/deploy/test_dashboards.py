"""The generated Grafana dashboards: fresh, complete, on the contract, and valid PromQL."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from grafana.panel_queries import (
    DASHBOARD_DIR,
    iter_panels,
    load_dashboards,
    panel_queries,
    substitute,
)
from tests.support import REPO_ROOT, missing

PROVISIONING = REPO_ROOT / "grafana" / "provisioning"

# The metric contract (README, "Metrics"); the histogram shows up as its _bucket series.
CONTRACT = {
    "forum_posts",
    "forum_threads_started",
    "forum_active_participants",
    "forum_new_participants",
    "forum_returning_participants_ratio",
    "forum_thread_participants_avg",
    "forum_thread_replies_avg",
    "forum_unanswered_threads_ratio",
    "forum_first_reply_median_seconds",
    "forum_sentiment_mean",
    "forum_sentiment_negative_ratio",
    "forum_keyword_posts",
    "forum_keyword_sentiment_mean",
    "forum_activity_change_ratio",
    "forum_changepoint_timestamp_seconds",
    "forum_changepoint_shift_ratio",
    "forum_decline_score",
    "forum_coverage_ratio",
    "forum_last_post_timestamp_seconds",
    "forum_monitor_polls_total",
    "forum_monitor_poll_failures_total",
    "forum_monitor_poll_duration_seconds_bucket",
    "forum_monitor_last_success_timestamp_seconds",
    "forum_monitor_items_ingested_total",
    "forum_monitor_http_requests_total",
    "forum_monitor_rate_limit_remaining",
    "forum_monitor_source_up",
    "forum_monitor_poll_interval_seconds",
}
UIDS = {"forum-monitor-overview", "forum-monitor-community", "forum-monitor-collector"}
DATASOURCE_UID = "forum-monitor-prometheus"


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    """grafana/generate.py, which needs grafana-foundation-sdk (a dev dependency)."""
    try:
        return importlib.import_module("grafana.generate")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("grafana_foundation_sdk"):
            raise
        missing("grafana-foundation-sdk is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return load_dashboards()


def test_committed_json_equals_a_fresh_generation(generate: ModuleType) -> None:
    fresh = generate.generated()
    committed = {path.name: path.read_text() for path in DASHBOARD_DIR.glob("*.json")}
    assert committed.keys() == fresh.keys()
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is stale: run python grafana/generate.py"


def test_check_mode_reports_stale_output(generate: ModuleType, tmp_path: Path) -> None:
    assert generate.main(["--output", str(tmp_path)]) == 0
    assert generate.main(["--check", "--output", str(tmp_path)]) == 0
    (tmp_path / "overview.json").write_text("{}\n")
    assert generate.main(["--check", "--output", str(tmp_path)]) == 1


def datasource_refs(node: object, where: str = "") -> Iterator[tuple[str, object]]:
    """Every ``datasource`` value anywhere in a dashboard, with where it was found."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            yield from datasource_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from datasource_refs(value, f"{where}/{index}")


def test_every_query_runs_on_the_datasource_variable(boards: dict) -> None:
    """No hard-coded datasource: a dashboard imported into any Grafana finds its Prometheus."""
    for uid, board in boards.items():
        refs = list(datasource_refs(board))
        # panels, their queries' panels, annotations and the community query variable
        assert len(refs) >= len(list(iter_panels(board))), uid
        for where, ref in refs:
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, (uid, where, ref)
        text = json.dumps(board)
        # the provisioned uid appears once: as the variable's starting value
        assert text.count(f'"{DATASOURCE_UID}"') == 1, uid


def test_datasource_variable_starts_on_the_provisioned_prometheus(boards: dict) -> None:
    assert set(boards) == UIDS
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    for uid, board in boards.items():
        variables = board["templating"]["list"]
        # first, so that variables querying through it (community) resolve after it
        variable = variables[0]
        assert variable["name"] == "datasource" and variable["type"] == "datasource", uid
        assert variable["query"] == "prometheus", uid
        assert variable["hide"] == 0, uid  # an importer can switch it
        # value for Grafana 9+ (uids), text for older ones (names)
        assert variable["current"]["value"] == source["uid"], uid
        assert variable["current"]["text"] == source["name"], uid


def test_every_panel_has_a_query_and_a_unique_id(boards: dict) -> None:
    for uid, board in boards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)) and 0 not in ids, uid
        for panel in iter_panels(board):
            exprs = [target.get("expr", "") for target in panel.get("targets", [])]
            assert exprs and all(exprs), f"{uid} / {panel['title']} has no query"


def test_queries_use_only_contract_metrics_and_cover_them(boards: dict) -> None:
    used: set[str] = set()
    for board in boards.values():
        for found in panel_queries(board, variables={"community": "c"}):
            used |= set(re.findall(r"\bforum_\w+", found.expr))
    assert used <= CONTRACT, used - CONTRACT
    assert used == CONTRACT, CONTRACT - used


def test_community_dashboard_variable_and_change_point_markers(boards: dict) -> None:
    board = boards["forum-monitor-community"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # coverage, not posts: a community that has never been polled has no forum_posts
    assert (
        variables["community"]["query"]["query"] == "label_values(forum_coverage_ratio, community)"
    )
    markers = {a["name"]: a for a in board["annotations"].get("list", [])}
    change_points = markers["Change points"]
    assert change_points["expr"].startswith("forum_changepoint_timestamp_seconds{")
    assert change_points["useValueForTime"] is True
    for found in panel_queries(board, variables={"community": "gigchat"}):
        if "community" in found.raw_expr:
            assert 'community="gigchat"' in found.expr, found


def test_overview_shows_firing_alerts(boards: dict) -> None:
    exprs = [q.expr for q in panel_queries(boards["forum-monitor-overview"])]
    assert any("ALERTS{" in expr for expr in exprs)


def test_extractor_substitutes_every_variable(boards: dict) -> None:
    queries = [
        found
        for board in boards.values()
        for found in panel_queries(
            board, variables={"community": "x"}, rate_interval="15s", range_seconds=600
        )
    ]
    assert queries
    for found in queries:
        assert "$" not in found.expr and "[[" not in found.expr, found
    exprs = " ".join(found.expr for found in queries)
    assert "[15s]" in exprs and "[600s]" in exprs
    with pytest.raises(ValueError, match=r"\$community"):
        panel_queries(boards["forum-monitor-community"])
    assert substitute('a{b="${x}"} [[y]] $x', {"x": "1", "y": "2"}) == 'a{b="1"} 2 1'


def test_every_query_parses(boards: dict, tmp_path: Path) -> None:
    """promtool has no PromQL-only check in 2.42: each query becomes a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian: prometheus)")
    queries = [
        found
        for board in boards.values()
        for found in panel_queries(board, variables={"community": "c"})
    ]
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    for number, found in enumerate(queries):
        expr = found.expr.replace("'", "''")
        lines += [f"      - record: dashboard_query_{number}", f"        expr: '{expr}'"]
    rules = tmp_path / "queries.yml"
    rules.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout + result.stderr
