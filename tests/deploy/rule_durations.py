"""Test-sized copies of the alert rules, for end-to-end runs against a real Prometheus.

The production rule file keeps every duration in its ``for:`` lines, one per alert
(groups use the global evaluation interval). A copy with those lines rewritten lets
an end-to-end test see an alert fire within seconds; everything else (expressions,
thresholds, labels, annotations, comments) stays byte for byte the same::

    path = write_test_sized_rules(tmp_path, default="2s", overrides={"ForumSourceDown": "0s"})
    # point the test Prometheus's rule_files at path

Text is rewritten line by line rather than through a YAML round trip, so nothing
but the ``for:`` values can change and no YAML library is needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from tests.support import REPO_ROOT

RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules" / "forum-monitor.yml"

_ALERT = re.compile(r"^\s*- alert:\s*(?P<name>\S+)\s*$")
_RECORD = re.compile(r"^\s*- record:")
_FOR = re.compile(r"^(?P<indent>\s+)for:\s*(?P<duration>\S+)\s*$")
_GROUP_INTERVAL = re.compile(r"^\s+interval:")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def for_durations(text: str) -> dict[str, str]:
    """Each alert's ``for:`` duration, by alert name ("0s" when it has none)."""
    durations: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if alert := _ALERT.match(line):
            current = alert["name"]
            durations[current] = "0s"
        elif _RECORD.match(line):
            current = None
        elif (found := _FOR.match(line)) and current is not None:
            durations[current] = found["duration"]
    return durations


def with_for_durations(text: str, *, default: str, overrides: Mapping[str, str] = {}) -> str:
    """``text`` with every alert's ``for:`` set to ``overrides[alert]`` or ``default``."""
    alerts = for_durations(text)
    unknown = sorted(set(overrides) - set(alerts))
    if unknown:
        raise ValueError(f"no such alert in the rules: {', '.join(unknown)}")
    for duration in [default, *overrides.values()]:
        if not _DURATION.match(duration):
            raise ValueError(f"not a Prometheus duration: {duration!r}")
    lines = []
    current: str | None = None
    for line in text.splitlines(keepends=True):
        if _GROUP_INTERVAL.match(line):
            raise ValueError("a group sets its own interval; durations must stay in `for:`")
        if alert := _ALERT.match(line):
            current = alert["name"]
        elif _RECORD.match(line):
            current = None
        elif (found := _FOR.match(line)) and current is not None:
            duration = overrides.get(current, default)
            line = f"{found['indent']}for: {duration}\n"
        lines.append(line)
    return "".join(lines)


def write_test_sized_rules(
    directory: Path,
    *,
    default: str = "1s",
    overrides: Mapping[str, str] = {},
    source: Path = RULES_FILE,
) -> Path:
    """Write the rewritten copy of ``source`` into ``directory``; return its path."""
    target = directory / source.name
    text = with_for_durations(source.read_text(), default=default, overrides=overrides)
    target.write_text(text)
    return target
