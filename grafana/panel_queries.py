"""Every PromQL query the generated dashboards run, ready to send to a Prometheus.

An end-to-end test loads the dashboards, substitutes the template variables the way
Grafana would, and runs each query against a real Prometheus::

    from grafana.panel_queries import all_queries

    for q in all_queries(variables={"community": "outlier"}):
        result = prometheus_query(q.expr)          # instant query at "now"
        assert result or q.conditional, q

``conditional`` marks queries that may rightly return nothing on a healthy, young
installation (no alert firing, no change point yet, no keyword groups configured,
a baseline still too short for change ratios, a host without rate-limit headers,
no failed poll yet, fewer than k departed or shared participants).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"

CONDITIONAL_METRICS = (
    "ALERTS",
    "forum_activity_change_ratio",
    "forum_changepoint_timestamp_seconds",
    "forum_changepoint_shift_ratio",
    "forum_decline_score",
    "forum_keyword_posts",
    "forum_keyword_sentiment_mean",
    "forum_monitor_poll_failures_total",
    "forum_monitor_rate_limit_remaining",
    # Undefined while no thread in the window is past the grace period or replied
    # to, or while the store holds no previous window to return from.
    "forum_unanswered_threads_ratio",
    "forum_first_reply_median_seconds",
    "forum_returning_participants_ratio",
    # Shown only with at least flow_min_authors authors behind them, and only between
    # communities of one platform namespace.
    "forum_participant_flow_ratio",
    "forum_participants_shared",
    "forum_departed_participants",
    # Nothing rises on a steady community, nor before a 7-day baseline exists.
    "forum_term_rising_score",
)

_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::\w+)?\}|\[\[(?P<old>\w+)\]\]|\$(?P<plain>\w+)")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    """The dashboard's uid."""
    panel: str
    """The panel title, or ``annotation: <name>`` for an annotation query."""
    ref_id: str
    expr: str
    """The query with every variable substituted."""
    raw_expr: str
    instant: bool
    conditional: bool
    """True when the query may return no series on a healthy installation."""


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """The generated dashboards by uid."""
    boards = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    return {board["uid"]: board for board in boards}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel except rows, including those folded inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def current_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Template variables with a saved current value (custom variables such as window)."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current") or {}
        if isinstance(current.get("value"), str) and current["value"]:
            values[variable["name"]] = current["value"]
    return values


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with ``$name``, ``${name}`` and ``[[name]]`` replaced from ``values``."""
    unknown = []

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["old"] or match["plain"]
        if name not in values:
            unknown.append(name)
            return match[0]
        return values[name]

    result = _VARIABLE.sub(replace, expr)
    if unknown:
        raise ValueError(f"no value for ${', $'.join(sorted(set(unknown)))} in {expr!r}")
    return result


def builtin_values(*, rate_interval: str, interval: str, range_seconds: int) -> dict[str, str]:
    """Grafana's global variables, as it would fill them for a panel."""
    return {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": f"{range_seconds}s",
        "__range_s": str(range_seconds),
        "__range_ms": str(range_seconds * 1000),
    }


def is_conditional(expr: str) -> bool:
    return any(re.search(rf"\b{name}\b", expr) for name in CONDITIONAL_METRICS)


def panel_queries(
    dashboard: Mapping[str, Any],
    *,
    variables: Mapping[str, str] | None = None,
    rate_interval: str = "1m",
    interval: str = "1m",
    range_seconds: int = 3600,
    annotations: bool = True,
) -> list[PanelQuery]:
    """The dashboard's panel (and annotation) queries, variables substituted.

    Values come from ``variables``, then the dashboard's saved current values
    (``window`` = 7d), then Grafana's globals; a variable left without a value
    (``community``, which Grafana fills from label_values) raises ``ValueError``.
    """
    values = builtin_values(
        rate_interval=rate_interval, interval=interval, range_seconds=range_seconds
    )
    values |= current_values(dashboard)
    values |= dict(variables or {})
    uid = dashboard["uid"]
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            raw = target.get("expr", "")
            queries.append(
                PanelQuery(
                    dashboard=uid,
                    panel=panel.get("title", ""),
                    ref_id=target.get("refId", ""),
                    expr=substitute(raw, values),
                    raw_expr=raw,
                    instant=bool(target.get("instant")) and not target.get("range"),
                    conditional=is_conditional(raw),
                )
            )
    if annotations:
        for annotation in dashboard.get("annotations", {}).get("list", []):
            raw = annotation.get("expr")
            if not raw:
                continue  # Grafana's built-in annotations carry no PromQL
            queries.append(
                PanelQuery(
                    dashboard=uid,
                    panel=f"annotation: {annotation['name']}",
                    ref_id="",
                    expr=substitute(raw, values),
                    raw_expr=raw,
                    instant=False,
                    conditional=is_conditional(raw),
                )
            )
    return queries


def all_queries(
    *, variables: Mapping[str, str] | None = None, directory: Path = DASHBOARD_DIR
) -> list[PanelQuery]:
    """``panel_queries`` of every generated dashboard (same keyword defaults)."""
    queries = []
    for board in load_dashboards(directory).values():
        queries += panel_queries(board, variables=variables)
    return queries


if __name__ == "__main__":
    import sys

    names = dict(arg.split("=", 1) for arg in sys.argv[1:])  # e.g. community=outlier
    for found in all_queries(variables=names or {"community": "example"}):
        print(f"{found.dashboard} / {found.panel} [{found.ref_id}]: {found.expr}")
