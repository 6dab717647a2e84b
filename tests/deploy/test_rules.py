"""Prometheus rules and config, and the Alertmanager config, as their own tools see them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.rule_durations import (
    RULES_FILE,
    for_durations,
    with_for_durations,
    write_test_sized_rules,
)
from tests.support import REPO_ROOT, missing

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SEVERITIES = {"critical", "warning", "info"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{args[0]} exited {result.returncode}:\n" + (
        result.stdout + result.stderr
    )
    return result


def test_rules_pass_promtool_check() -> None:
    run(tool("promtool"), "check", "rules", RULES_FILE)


def test_rule_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert len(tests) >= 3
    result = run(tool("promtool"), "test", "rules", *tests)
    assert "FAILED" not in result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    result = run(tool("promtool"), "check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert "1 rule files found" in result.stdout + result.stderr


def test_alertmanager_config_is_valid() -> None:
    run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG)


def alert_blocks(text: str) -> dict[str, str]:
    """Each alert rule's text, by name."""
    parts = re.split(r"(?m)^\s*- (?=alert:|record:)", text)
    blocks = {}
    for part in parts[1:]:
        if found := re.match(r"alert:\s*(\S+)", part):
            blocks[found[1]] = part
    return blocks


def test_every_alert_has_severity_annotations_and_runbook() -> None:
    blocks = alert_blocks(RULES_FILE.read_text())
    assert len(blocks) >= 9
    for name, block in blocks.items():
        severity = re.search(r"severity:\s*(\S+)", block)
        assert severity and severity[1] in SEVERITIES, name
        for key in ("summary", "description", "runbook"):
            assert re.search(rf"^\s+{key}: \S", block, re.MULTILINE), (name, key)
        # the exporter as a whole, and the count of communities nobody holds, name none
        if name not in ("ForumMonitorDown", "ForumCommunitiesUnheld"):
            assert "{{ $labels.community }}" in block, name
        assert re.search(r"^\s+for: \S+$", block, re.MULTILINE), f"{name} has no for:"


def test_decline_alerts_require_trusted_coverage() -> None:
    blocks = alert_blocks(RULES_FILE.read_text())
    declines = [name for name, block in blocks.items() if "severity: warning" in block]
    declines += ["ForumChangePointDetected"]
    # ForumDeclineDetected is not gated: the analysis stage withholds the score while
    # coverage is low, and a 7d gate would silence it for a week after any outage
    for name in set(declines) - {"ForumCollectorErrors", "ForumDeclineDetected"}:
        gate = "and on (community, source) community_source:forum_coverage_ratio_7d:trusted"
        assert gate in blocks[name], name


def test_rules_read_community_series_whichever_replica_exports_them() -> None:
    """A community's series move from one `instance` to another when it changes replicas
    (README, "Deploy"): rules read gauges through max without (instance), counters through
    rate() (summed), so no alert restarts or doubles on a handover."""
    rules = [
        rule
        for group in yaml.safe_load(RULES_FILE.read_text())["groups"]
        for rule in group["rules"]
    ]
    read = 0
    for rule in rules:
        expr = " ".join(rule["expr"].split())
        for found in re.finditer(r"(?<![\w:])forum_\w+", expr):
            before = expr[: found.start()]
            # `unless` keeps the left side's series: its right side only says which
            assert before.endswith(
                ("max without (instance) (", "rate(", "unless on (community) ")
            ), (rule.get("alert") or rule.get("record"), found[0])
            if before.endswith("rate("):
                assert re.match(
                    r"sum (by \(community|without \(instance)", before.split("/")[-1].strip()
                )
            read += 1
    assert read >= 20


def test_test_sized_copy_changes_only_for_lines(tmp_path: Path) -> None:
    original = RULES_FILE.read_text()
    path = write_test_sized_rules(tmp_path, default="2s", overrides={"ForumSourceDown": "0s"})
    rewritten = path.read_text()
    durations = for_durations(rewritten)
    assert durations == {name: "2s" for name in durations} | {"ForumSourceDown": "0s"}
    assert set(durations) == set(alert_blocks(original))
    changed = [
        (before, after)
        for before, after in zip(original.splitlines(), rewritten.splitlines(), strict=True)
        if before != after
    ]
    assert changed and all(after.strip().startswith("for: ") for _, after in changed)
    run(tool("promtool"), "check", "rules", path)


def test_test_sized_copy_rejects_unknown_alerts_and_bad_durations() -> None:
    text = RULES_FILE.read_text()
    with pytest.raises(ValueError, match="ForumNoSuchAlert"):
        with_for_durations(text, default="1s", overrides={"ForumNoSuchAlert": "1s"})
    with pytest.raises(ValueError, match="duration"):
        with_for_durations(text, default="soon")
