"""The status page at /: every community, what is out of line, and 90 days of charts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from importlib import resources

from monitor.analysis.conditions import describe_duration
from monitor.analysis.snapshot import CommunitySnapshot, DayActivity
from monitor.web.sparkline import Marker, sparkline
from monitor.web.view import CommunityView, Presentation

CHART_DAYS = 90
CHARTS: list[tuple[str, str, Callable[[DayActivity], float | None], bool]] = [
    ("posts", "Posts per day", lambda d: float(d.posts), True),
    (
        "active_participants",
        "Active participants per day",
        lambda d: float(d.active_participants),
        True,
    ),
    ("sentiment_mean", "Mean sentiment per day (-1..1)", lambda d: d.sentiment_mean, False),
]
VERDICT_WORDS = {
    "down": "source down",
    "declining": "declining",
    "growing": "growing",
    "steady": "steady",
    "warming up": "warming up",
    "not analysed": "not analysed",
}


def stylesheet() -> str:
    return resources.files("monitor.web").joinpath("status.css").read_text(encoding="utf-8")


def _when(epoch: int | None, *, now: int) -> str:
    if epoch is None:
        return "never"
    stamp = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f'{describe_duration(now - epoch)} ago <span class="muted">({stamp})</span>'


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.0%}"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


UNKNOWN = '<span class="muted" title="no successful poll covered any of these days">unknown</span>'
"""A count of a window no poll covered: not 0, and not "n/a" either (it exists, unseen)."""


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _ratio_cell(snap: CommunitySnapshot, signal: str) -> str:
    for trend in snap.trends:
        if trend.signal == signal and trend.window == "7d":
            tone = "down" if trend.ratio < 0.75 else "up" if trend.ratio >= 1.25 else "flat"
            return f'<span class="ratio {tone}">{trend.ratio:.0%}</span>'
    return '<span class="muted" title="baseline too short or coverage too low">n/a</span>'


def _facts(snap: CommunitySnapshot, *, now: int) -> str:
    week, month = snap.windows.get("7d"), snap.windows.get("28d")
    error = (
        '<span class="ok">none</span>'
        if snap.last_error is None
        else f'<span class="bad">{escape(snap.last_error)}</span>'
    )
    rows = [
        ("Source", escape(snap.source)),
        ("Last successful poll", _when(snap.last_success_at, now=now)),
        ("Last error", error),
        ("Participants, 7 days", str(week.active_participants) if week else UNKNOWN),
        ("Posts, 7 days", str(week.posts) if week else UNKNOWN),
        (
            "Change vs 4-week baseline (7 days)",
            f"participants {_ratio_cell(snap, 'active_participants')} · "
            f"posts {_ratio_cell(snap, 'posts')} · "
            f"threads {_ratio_cell(snap, 'threads_started')}",
        ),
        (
            "Sentiment (mean, -1..1)",
            f"7 days {_signed(week.sentiment_mean if week else None)} · "
            f"28 days {_signed(month.sentiment_mean if month else None)} · "
            f"negative share {_percent(week.sentiment_negative_ratio if week else None)}",
        ),
        (
            "Unanswered threads",
            f"7 days {_percent(week.unanswered_threads_ratio if week else None)} · "
            f"28 days {_percent(month.unanswered_threads_ratio if month else None)}",
        ),
        ("Coverage, 7 days", _percent(snap.coverage.get("7d"))),
    ]
    if week and week.keywords:
        mentions = " · ".join(
            f"{escape(group)} {found.posts}" for group, found in sorted(week.keywords.items())
        )
        rows.append(("Keyword mentions, 7 days", mentions))
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return f'<dl class="facts">{items}</dl>'


def _conditions(view: CommunityView) -> str:
    if not view.conditions:
        return '<p class="calm">Nothing out of line.</p>'
    items = "".join(
        f'<li class="{c.severity}"><strong>{escape(c.alert)}</strong> '
        f'<span class="severity">{c.severity}</span><br>{escape(c.summary)}</li>'
        for c in view.conditions
    )
    return f'<ul class="conditions">{items}</ul>'


def _markers(view: CommunityView, snap: CommunitySnapshot) -> list[Marker]:
    markers = [Marker(a.at // 86400 * 86400, a.label, "event") for a in view.annotations]
    for point in snap.changepoints:
        markers.append(
            Marker(
                point.onset // 86400 * 86400,
                f"change point in {point.signal}: {point.shift_ratio:.0%} of the level before",
                "changepoint",
            )
        )
    return markers


def _charts(view: CommunityView, snap: CommunitySnapshot) -> str:
    daily: Sequence[DayActivity] = snap.daily[-CHART_DAYS:]
    if not daily:
        return ""
    days = [d.day for d in daily]
    coverage = [d.coverage for d in daily]
    markers = _markers(view, snap)
    figures = []
    for signal, title, pick, floor_zero in CHARTS:
        values = [pick(d) for d in daily]
        known = [v for v, c in zip(values, coverage, strict=True) if v is not None and c >= 0.9]
        latest = _number(known[-1]) if known else "n/a"
        svg = sparkline(
            days=days,
            values=values,
            coverage=coverage,
            title=f"{title}, {view.id}, last {len(daily)} days",
            markers=markers,
            floor_zero=floor_zero,
        )
        scale = "no data"
        if known:
            scale = f"min {_number(min(known))}, max {_number(max(known))}, last {latest}"
        figures.append(
            f'<figure class="chart" data-signal="{signal}">{svg}'
            f"<figcaption><strong>{escape(title)}</strong> "
            f'<span class="muted">{scale}</span></figcaption></figure>'
        )
    legend = [f"{_date(days[0])} – {_date(days[-1])}"]
    for marker in markers:
        css = "event" if marker.kind == "event" else "changepoint"
        legend.append(
            f'<span class="key {css}"></span>{escape(marker.label)} ({_date(marker.day)})'
        )
    if any(c < 0.9 for c in coverage):
        legend.append('<span class="key gap"></span>not covered by successful polls')
    return f'<div class="charts">{"".join(figures)}</div><p class="legend">{" · ".join(legend)}</p>'


def _not_analysed(view: CommunityView) -> str:
    rows = [
        ("Source", escape(view.source)),
        ("Poll interval", describe_duration(view.community.interval)),
    ]
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    if view.verdict == "warming up":
        return (
            f'<dl class="facts">{items}</dl><p class="muted">Warming up: the service started '
            "a moment ago and analyses its communities in the background; this one's results "
            "follow shortly.</p>"
        )
    return (
        f'<dl class="facts">{items}</dl><p class="muted">Not analysed yet: no result of its '
        "polls has been analysed. Its first poll may still be running, or the store could "
        "not be read (see the service log).</p>"
    )


def _section(view: CommunityView, *, now: int, simulated: bool) -> str:
    verdict = view.verdict
    badge = f'<span class="verdict {verdict.replace(" ", "-")}">{VERDICT_WORDS[verdict]}</span>'
    simulated_tag = '<span class="simulated-tag">simulated data</span>' if simulated else ""
    if view.snapshot is None:
        body = f'<div class="body"><div class="left">{_not_analysed(view)}</div></div>'
    else:
        body = (
            f'<div class="body"><div class="left">{_facts(view.snapshot, now=now)}'
            f"<h3>Out of line now</h3>{_conditions(view)}</div>"
            f'<div class="right">{_charts(view, view.snapshot)}</div></div>'
        )
    return (
        f'<section class="community" id="community-{escape(view.id)}" '
        f'data-community="{escape(view.id)}" data-verdict="{escape(verdict)}">'
        f"<header><h2>{escape(view.id)}</h2>{badge}{simulated_tag}</header>{body}</section>"
    )


def _key_notice(since: int | None, *, now: int) -> str:
    if since is None:
        return ""
    return (
        '<p class="key-notice" role="note"><strong>Authors counted anew since '
        f"{datetime.fromtimestamp(since, UTC).strftime('%Y-%m-%d %H:%M UTC')}.</strong> "
        f"A new pseudonym key was accepted then ({describe_duration(now - since)} ago): "
        "authors before and after it cannot be matched, so new and returning participants "
        "across that moment are not comparable.</p>"
    )


def render_status_page(
    views: Sequence[CommunityView],
    *,
    presentation: Presentation,
    now: int,
    version: str,
    authors_counted_since: int | None = None,
) -> str:
    simulated = presentation.simulated
    banner = (
        '<p class="simulated-banner" role="note"><strong>Simulated data.</strong> '
        "This is <code>forum-monitor demo</code>: the communities below are generated "
        "offline and served by a fake forum on 127.0.0.1; the monitor polls them through "
        "its real adapters.</p>"
        if simulated
        else ""
    )
    body = "".join(_section(v, now=now, simulated=simulated) for v in views) or (
        '<p class="calm">No enabled communities configured.</p>'
    )
    counts: dict[str, int] = {}
    for view in views:
        counts[view.verdict] = counts.get(view.verdict, 0) + 1
    summary = ", ".join(f"{n} {VERDICT_WORDS[v]}" for v, n in sorted(counts.items()))
    title = "forum-monitor status" + (" (simulated data)" if simulated else "")
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>{escape(title)}</title><style>{stylesheet()}</style></head><body>"
        f'<header class="top"><h1>forum-monitor</h1><p class="muted">'
        f"{len(views)} communities{': ' + summary if summary else ''} · "
        f"as of {datetime.fromtimestamp(now, UTC).strftime('%Y-%m-%d %H:%M UTC')} · "
        f"refreshes every minute</p>"
        '<nav><a href="/metrics">/metrics</a> <a href="/api/v1/communities">JSON API</a> '
        '<a href="/docs">API docs</a></nav></header>'
        f"{banner}{_key_notice(authors_counted_since, now=now)}<main>{body}</main>"
        f'<footer class="muted">forum-monitor {escape(version)} · "Out of line" shows the '
        "alert rules' conditions as they hold now (without their <code>for:</code> "
        "delays).</footer></body></html>"
    )
