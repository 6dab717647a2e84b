"""forum-monitor's Grafana dashboards as code (grafana-foundation-sdk).

    python grafana/generate.py           # writes grafana/dashboards/*.json
    python grafana/generate.py --check   # exits 1 if the committed JSON is stale

Three dashboards. Every query runs on the datasource chosen in the dashboard's
``$datasource`` variable (any Prometheus), so a dashboard imported through Grafana's UI
works with whichever Prometheus that Grafana already has. The variable starts on the
datasource provisioned with the fixed uid ``PROVISIONED_DATASOURCE_UID``
(grafana/provisioning/datasources/prometheus.yml); where that one does not exist,
Grafana picks its default (or first) Prometheus.

- Overview: every community side by side;
- Community: one community (``$community``) in depth, with change-point markers;
- Collector health: is the service polling, and how politely.

Queries use only the metric contract (README, "Metrics"). Edit this file, run it,
and commit the JSON with it; tests/deploy/test_dashboards.py checks they agree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog import builder as cog
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

OUTPUT_DIR = Path(__file__).resolve().parent / "dashboards"
PROVISIONED_DATASOURCE_UID = "forum-monitor-prometheus"
PROVISIONED_DATASOURCE_NAME = "forum-monitor Prometheus"
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
TAGS = ["forum-monitor"]

# The alert thresholds of deploy/prometheus/rules/forum-monitor.yml, drawn on panels.
CHANGE_RATIO_ALERT = 0.75
COVERAGE_TRUSTED = 0.9

Panel = cog.Builder[model.Panel]


class _PanelBuilder(Protocol):
    def with_target(self, target: cog.Builder[Any]) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)
C = 'community="$community"'
CW = 'community="$community", window="$window"'


# ---------------------------------------------------------------- building blocks


def query(
    expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    """A Prometheus target; ref ids are assigned per panel by ``with_targets``."""
    target = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto")
    if instant:
        target = target.instant()
    else:
        target = target.range()
    if table_format:
        target = target.format(prometheus_model.PromQueryFormat.TABLE)
    return target


def with_targets(panel: P, targets: Iterable[prometheus.Dataquery]) -> P:
    for ref_id, target in zip("ABCDEFGHIJ", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref_id))
    return panel.datasource(DATASOURCE)


def thresholds(*steps: tuple[float | None, str]) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def ratio_thresholds() -> builders.ThresholdsConfig:
    """Red under the alert threshold, amber under 0.9, green otherwise."""
    return thresholds((None, "red"), (CHANGE_RATIO_ALERT, "orange"), (0.9, "green"))


def legend_table(*calcs: str) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
    )


def graph(
    title: str,
    *targets: prometheus.Dataquery,
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    min_value: float | None = None,
    max_value: float | None = None,
    alert_line: builders.ThresholdsConfig | None = None,
    calcs: tuple[str, ...] = ("lastNotNull",),
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(legend_table(*calcs))
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if alert_line is not None:
        panel = panel.thresholds(alert_line).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    return with_targets(panel, targets)


def single(
    title: str,
    target: prometheus.Dataquery,
    *,
    unit: str = "short",
    description: str = "",
    width: int = 6,
    height: int = 5,
    steps: builders.ThresholdsConfig | None = None,
    mappings: list[model.ValueMapping] | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(steps or thresholds((None, "blue")))
    )
    if mappings:
        panel = panel.mappings(mappings)
    return with_targets(panel, [target])


def bars(
    title: str,
    target: prometheus.Dataquery,
    *,
    unit: str,
    description: str = "",
    width: int = 12,
    height: int = 8,
    steps: builders.ThresholdsConfig | None = None,
    min_value: float = 0,
    max_value: float | None = None,
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .min(min_value)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(steps or thresholds((None, "blue")))
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return with_targets(panel, [target])


def grid(
    title: str,
    *targets: prometheus.Dataquery,
    description: str = "",
    width: int = 12,
    height: int = 8,
    transformations: list[model.DataTransformerConfig] | None = None,
) -> table.Panel:
    panel = table.Panel().title(title).description(description).span(width).height(height)
    for transformation in transformations or []:
        panel = panel.with_transformation(transformation)
    return with_targets(panel, targets)


class PrometheusAnnotationModel(model.AnnotationQuery):
    """The SDK's annotation plus the Prometheus datasource's own annotation options."""

    def __init__(
        self, *, title_format: str, use_value_for_time: bool, step: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.title_format = title_format
        self.use_value_for_time = use_value_for_time
        self.step = step

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload["titleFormat"] = self.title_format
        payload["useValueForTime"] = self.use_value_for_time
        payload["step"] = self.step
        return payload


class PrometheusAnnotation(cog.Builder[model.AnnotationQuery]):
    """Markers from a PromQL query; ``use_value_for_time`` places them at value (ms)."""

    def __init__(
        self,
        *,
        name: str,
        expr: str,
        color: str,
        title_format: str,
        use_value_for_time: bool = False,
        step: str = "1h",
    ) -> None:
        self._model = PrometheusAnnotationModel(
            name=name,
            datasource=DATASOURCE,
            enable=True,
            hide=False,
            icon_color=color,
            expr=expr,
            title_format=title_format,
            use_value_for_time=use_value_for_time,
            step=step,
        )

    def build(self) -> model.AnnotationQuery:
        return self._model


def datasource_variable() -> builders.DatasourceVariable:
    """Which Prometheus the panels query: any one, starting on the provisioned one.

    Grafana matches the saved current value by value (the uid, Grafana 9 and later) or by
    text (the name, older ones); when neither exists it selects its default Prometheus.
    """
    return (
        builders.DatasourceVariable(DATASOURCE_VARIABLE)
        .id(DATASOURCE_VARIABLE)
        .label("Prometheus")
        .type("prometheus")
        .current(
            model.VariableOption(
                selected=True,
                text=PROVISIONED_DATASOURCE_NAME,
                value=PROVISIONED_DATASOURCE_UID,
            )
        )
    )


def dashboard(uid: str, title: str, description: str) -> builders.Dashboard:
    links = builders.DashboardLink("forum-monitor").type(model.DashboardLinkType.DASHBOARDS)
    return (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("utc")
        .time("now-30d", "now")
        .refresh("5m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(links.tags(TAGS).as_dropdown(False).include_vars(True).keep_time(True))
        .with_variable(datasource_variable())
    )


def add_rows(
    board: builders.Dashboard, rows: Sequence[tuple[str, Sequence[Panel]]]
) -> builders.Dashboard:
    for title, panels in rows:
        board = board.with_row(builders.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board


# ---------------------------------------------------------------- dashboards


def overview() -> builders.Dashboard:
    board = dashboard(
        "forum-monitor-overview",
        "forum-monitor / Overview",
        "Every watched community side by side: participation, trends, mood, coverage, alerts.",
    )
    firing = 'ALERTS{alertstate="firing", alertname=~"Forum.*"}'
    now = [
        bars(
            "Active participants, last 7 days",
            query('forum_active_participants{window="7d"}', "{{community}}", instant=True),
            unit="short",
            description="Distinct authors who posted in the last 7 days.",
            width=8,
        ),
        bars(
            "Participation vs. 4-week baseline",
            query(
                'forum_activity_change_ratio{signal="active_participants", window="7d"}',
                "{{community}}",
                instant=True,
            ),
            unit="percentunit",
            description="Last 7 days over the 4 weeks before (1.0 = as usual). Absent while "
            "the baseline is short or has gaps. Red: under the ForumParticipationDrop threshold.",
            width=8,
            steps=ratio_thresholds(),
            max_value=1.5,
        ),
        grid(
            "Firing alerts",
            query(
                f"count by (alertname, community, severity) ({firing})",
                instant=True,
                table_format=True,
            ),
            description="Alerts from deploy/prometheus/rules/forum-monitor.yml firing now.",
            width=8,
        ),
    ]
    trends = [
        graph(
            "Active participants (7d window)",
            query('forum_active_participants{window="7d"}', "{{community}}"),
        ),
        graph(
            "Change vs. baseline (7d window)",
            query('forum_activity_change_ratio{window="7d"}', "{{community}} {{signal}}"),
            unit="percentunit",
            description="Dashed line: the alert threshold for posts and participants.",
            alert_line=ratio_thresholds(),
        ),
        graph(
            "Decline score (participants)",
            query('forum_decline_score{signal="active_participants"}', "{{community}}"),
            description="How far the last 3 and 10 days sit below the baseline, in alarm "
            "units: above 1 is a decline (the ForumDecline alert).",
        ),
        graph(
            "Threads started (7d window)",
            query('forum_threads_started{window="7d"}', "{{community}}"),
        ),
        graph(
            "Unanswered threads (7d window)",
            query('forum_unanswered_threads_ratio{window="7d"}', "{{community}}"),
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Mean sentiment (7d window)",
            query('forum_sentiment_mean{window="7d"}', "{{community}}"),
            description="VADER compound score, -1 (negative) .. 1 (positive).",
            min_value=-1,
            max_value=1,
        ),
        graph(
            "Poll coverage (7d window)",
            query('forum_coverage_ratio{window="7d"}', "{{community}}"),
            unit="percentunit",
            description="Share of the last 7 days covered by successful polls. Under 90% "
            "(dashed) no decline alert fires for the community.",
            min_value=0,
            max_value=1,
            alert_line=thresholds((None, "red"), (COVERAGE_TRUSTED, "green")),
        ),
        graph(
            "Firing alerts over time",
            query(f"count by (community) ({firing})", "{{community}}"),
            width=24,
            calcs=("max",),
        ),
    ]
    return add_rows(board, [("Now", now), ("Trends", trends)])


def community_drilldown() -> builders.Dashboard:
    board = dashboard(
        "forum-monitor-community",
        "forum-monitor / Community",
        "One community in depth. Markers: detected change points (onset) and firing alerts.",
    )
    board = board.with_variable(
        builders.QueryVariable("community")
        .id("community")
        .label("Community")
        .datasource(DATASOURCE)
        # forum_coverage_ratio: every watched community has one, a never-polled one too
        # (its activity gauges are absent until a poll covers something)
        .query({"query": "label_values(forum_coverage_ratio, community)", "refId": "community"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    ).with_variable(
        builders.CustomVariable("window")
        .id("window")
        .label("Window")
        .values("1d,7d,28d")
        .current(model.VariableOption(selected=True, text="7d", value="7d"))
        .options(
            [
                model.VariableOption(selected=value == "7d", text=value, value=value)
                for value in ("1d", "7d", "28d")
            ]
        )
    )
    board = board.annotation(
        PrometheusAnnotation(
            name="Change points",
            expr=f"forum_changepoint_timestamp_seconds{{{C}}} * 1000",
            color="purple",
            title_format="Change point: {{signal}}",
            use_value_for_time=True,
        )
    ).annotation(
        PrometheusAnnotation(
            name="Alerts",
            expr=f'ALERTS{{alertstate="firing", {C}}}',
            color="red",
            title_format="{{alertname}}",
            step="5m",
        )
    )
    participation = [
        graph(
            "Active participants",
            query(f"forum_active_participants{{{CW}}}", "active participants ($window)"),
        ),
        graph(
            "Change vs. baseline",
            query(f"forum_activity_change_ratio{{{C}}}", "{{signal}} ({{window}})"),
            unit="percentunit",
            description="Recent value over the preceding 4 weeks; 1d compares the same "
            "weekday. Absent while the baseline is short or coverage under 90%.",
            alert_line=ratio_thresholds(),
        ),
        graph(
            "Decline score",
            query(f"forum_decline_score{{{C}}}", "{{signal}}"),
            description="How far the last 3 and 10 days sit below the baseline, in alarm "
            "units: above 1 is a decline. Absent while coverage is low.",
        ),
        graph(
            "New participants",
            query(f"forum_new_participants{{{CW}}}", "new ($window)"),
            description="Authors whose first seen post falls in the window.",
        ),
        graph(
            "Returning participants",
            query(f"forum_returning_participants_ratio{{{CW}}}", "returning ($window)"),
            unit="percentunit",
            description="Share of the previous window's authors who posted again.",
            min_value=0,
            max_value=1,
        ),
    ]
    threads = [
        graph(
            "Posts and threads started",
            query(f"forum_posts{{{CW}}}", "posts ($window)"),
            query(f"forum_threads_started{{{CW}}}", "threads started ($window)"),
            width=8,
        ),
        graph(
            "Replies per thread",
            query(f"forum_thread_replies_avg{{{CW}}}", "replies per thread ($window)"),
            width=8,
        ),
        graph(
            "Participants per thread",
            query(f"forum_thread_participants_avg{{{CW}}}", "participants per thread ($window)"),
            width=8,
        ),
        graph(
            "Unanswered threads",
            query(f"forum_unanswered_threads_ratio{{{CW}}}", "unanswered ($window)"),
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Time to first reply (median)",
            query(f"forum_first_reply_median_seconds{{{CW}}}", "median first reply ($window)"),
            unit="s",
        ),
    ]
    mood = [
        graph(
            "Mean sentiment",
            query(f"forum_sentiment_mean{{{CW}}}", "mean ($window)"),
            description="VADER compound score, -1 (negative) .. 1 (positive).",
            min_value=-1,
            max_value=1,
        ),
        graph(
            "Negative posts",
            query(f"forum_sentiment_negative_ratio{{{CW}}}", "negative share ($window)"),
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        graph(
            "Posts by keyword group",
            query(f"forum_keyword_posts{{{CW}}}", "{{keyword_group}}"),
            description="Posts matching each configured keyword group ([keywords] in the config).",
        ),
        graph(
            "Sentiment by keyword group",
            query(f"forum_keyword_sentiment_mean{{{CW}}}", "{{keyword_group}}"),
            min_value=-1,
            max_value=1,
        ),
    ]
    shifts = [
        grid(
            "Latest change points",
            query(
                f"forum_changepoint_timestamp_seconds{{{C}}} * 1000",
                instant=True,
                table_format=True,
            ),
            query(f"forum_changepoint_shift_ratio{{{C}}}", instant=True, table_format=True),
            description="Onset and size (level after / level before) of each signal's latest "
            "level shift.",
            transformations=[
                model.DataTransformerConfig(id_val="merge", options={}),
                model.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {
                            "Time": True,
                            "__name__": True,
                            "job": True,
                            "instance": True,
                        },
                        "renameByName": {"Value #A": "onset", "Value #B": "shift ratio"},
                    },
                ),
            ],
        ),
        graph(
            "Poll coverage",
            query(f"forum_coverage_ratio{{{C}}}", "{{window}}"),
            unit="percentunit",
            description="Share of each window covered by successful polls.",
            min_value=0,
            max_value=1,
            alert_line=thresholds((None, "red"), (COVERAGE_TRUSTED, "green")),
        ),
        single(
            "Newest post",
            query(f"time() - forum_last_post_timestamp_seconds{{{C}}}", "age", instant=True),
            unit="s",
            description="How long ago the newest stored post was written.",
        ),
    ]
    return add_rows(
        board,
        [
            ("Participation", participation),
            ("Threads", threads),
            ("Mood and topics", mood),
            ("Change points and coverage", shifts),
        ],
    )


def collector_health() -> builders.Dashboard:
    board = dashboard(
        "forum-monitor-collector",
        "forum-monitor / Collector health",
        "Is every community being polled, how often it fails and why, and how politely.",
    )
    up_mappings: list[model.ValueMapping] = [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text="down", color="red"),
                "1": model.ValueMappingResult(text="up", color="green"),
            }
        )
    ]
    rate = "[$__rate_interval]"
    status = [
        single(
            "Source up",
            query("forum_monitor_source_up", "{{community}}", instant=True),
            description="1 if the community's last poll succeeded.",
            width=8,
            steps=thresholds((None, "red"), (1, "green")),
            mappings=up_mappings,
        ),
        bars(
            "Polls missed",
            query(
                "(time() - forum_monitor_last_success_timestamp_seconds)"
                " / forum_monitor_poll_interval_seconds",
                "{{community}}",
                instant=True,
            ),
            unit="short",
            description="Poll intervals since the last success; ForumSourceDown fires over 3.",
            width=8,
            steps=thresholds((None, "green"), (2, "orange"), (3, "red")),
        ),
        single(
            "Exporter scraped",
            query('up{job="forum-monitor"}', "{{instance}}", instant=True),
            width=8,
            steps=thresholds((None, "red"), (1, "green")),
            mappings=up_mappings,
        ),
    ]
    polls = [
        graph(
            "Polls per minute",
            query(
                f"sum by (community) (rate(forum_monitor_polls_total{rate})) * 60",
                "{{community}}",
            ),
        ),
        graph(
            "Poll failures by reason, per minute",
            query(
                f"sum by (community, reason) (rate(forum_monitor_poll_failures_total{rate})) * 60",
                "{{community}} {{reason}}",
            ),
        ),
        graph(
            "Failed share of polls, last hour",
            query(
                "sum by (community) (rate(forum_monitor_poll_failures_total[1h]))"
                " / sum by (community) (rate(forum_monitor_polls_total[1h]))",
                "{{community}}",
            ),
            unit="percentunit",
            description="Dashed: ForumCollectorErrors fires above 20% for 30 minutes.",
            min_value=0,
            max_value=1,
            alert_line=thresholds((None, "green"), (0.2, "red")),
        ),
        graph(
            "Poll duration",
            query(
                "histogram_quantile(0.5, sum by (community, le) "
                f"(rate(forum_monitor_poll_duration_seconds_bucket{rate})))",
                "{{community}} p50",
            ),
            query(
                "histogram_quantile(0.95, sum by (community, le) "
                f"(rate(forum_monitor_poll_duration_seconds_bucket{rate})))",
                "{{community}} p95",
            ),
            unit="s",
        ),
        graph(
            "Items ingested per minute",
            query(
                f"sum by (community, kind) (rate(forum_monitor_items_ingested_total{rate})) * 60",
                "{{community}} {{kind}}",
            ),
        ),
        grid(
            "Poll failures in the time range",
            query(
                "sum by (community, reason) "
                "(increase(forum_monitor_poll_failures_total[$__range]))",
                instant=True,
                table_format=True,
            ),
        ),
    ]
    http = [
        graph(
            "HTTP requests per minute, by status",
            query(
                f"sum by (host, code) (rate(forum_monitor_http_requests_total{rate})) * 60",
                "{{host}} {{code}}",
            ),
        ),
        graph(
            "Rate-limit headroom",
            query("forum_monitor_rate_limit_remaining", "{{host}}"),
            description="Requests the host says are left in its window (X-Ratelimit-Remaining).",
            min_value=0,
        ),
    ]
    return add_rows(board, [("Status", status), ("Polls", polls), ("Requests to sources", http)])


DASHBOARDS: dict[str, Callable[[], builders.Dashboard]] = {
    "overview": overview,
    "community": community_drilldown,
    "collector-health": collector_health,
}


# ---------------------------------------------------------------- output


def render(build: Callable[[], builders.Dashboard]) -> dict[str, Any]:
    """The dashboard as plain JSON data, with stable panel ids."""
    built = build().build()
    ids = itertools.count(1)
    for panel in built.panels or []:
        panel.id_val = next(ids)
    data: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    return data


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": dump(render(build)) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in generated().items():
        path: Path = args.output / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
