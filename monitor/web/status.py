"""The status pages: at /, every community in one sortable table; at /community/{id},
one community's facts, what is out of line and 90 days of charts.

Both are server-rendered with no script: the table sorts by a query parameter
(``/?sort=posts_7d&order=desc``) whose links are its column headings. A row costs a few
hundred bytes, so the table stays under 1 MB at 1,000 communities; the charts, some 5 KB
a community, are only on its own page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from html import escape
from importlib import resources
from urllib.parse import quote

from monitor.analysis.conditions import describe_duration
from monitor.analysis.snapshot import CommunitySnapshot, DayActivity
from monitor.analysis.terms import term_label
from monitor.analysis.trends import GOOD_COVERAGE
from monitor.analysis.windows import WindowActivity
from monitor.web.charts import STATUS_SIZE, Marker, day_chart
from monitor.web.view import CommunityView, Presentation

CHART_DAYS = 90
CHARTS: list[tuple[str, str, str, Callable[[DayActivity], float | None], bool]] = [
    ("posts", "Posts per day", "posts/day", lambda d: float(d.posts), True),
    (
        "active_participants",
        "Active participants per day",
        "authors/day",
        lambda d: float(d.active_participants),
        True,
    ),
    (
        "sentiment_mean",
        "Mean sentiment per day",
        "mean score, -1..1",
        lambda d: d.sentiment_mean,
        False,
    ),
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


def changepoint_label(shift_ratio: float, onset: int) -> str:
    """A change point's marker label: its onset day and the new level's share of the old."""
    shift = "from zero" if shift_ratio == float("inf") else f"{shift_ratio:.0%} of before"
    return f"shift {_date(onset)[5:]}: {shift}"


def chart_markers(view: CommunityView, snap: CommunitySnapshot, signal: str) -> list[Marker]:
    """The events (on every chart) and the change points of ``signal`` only."""
    markers = [Marker(a.at // 86400 * 86400, a.label, "event") for a in view.annotations]
    for point in snap.changepoints:
        if point.signal == signal:
            onset = point.onset // 86400 * 86400
            markers.append(
                Marker(onset, changepoint_label(point.shift_ratio, onset), "changepoint")
            )
    return markers


def _charts(view: CommunityView, snap: CommunitySnapshot) -> str:
    daily: Sequence[DayActivity] = snap.daily[-CHART_DAYS:]
    if not daily:
        return ""
    days = [d.day for d in daily]
    coverage = [d.coverage for d in daily]
    figures = []
    for signal, title, unit, pick, floor_zero in CHARTS:
        values = [pick(d) for d in daily]
        known = [
            v for v, c in zip(values, coverage, strict=True) if v is not None and c >= GOOD_COVERAGE
        ]
        latest = _number(known[-1]) if known else "n/a"
        markers = chart_markers(view, snap, signal)
        svg = day_chart(
            days=days,
            values=values,
            coverage=coverage,
            title=f"{title}, {view.id}",
            unit=unit,
            markers=markers,
            floor_zero=floor_zero,
            size=STATUS_SIZE,
        )
        scale = "no data"
        if known:
            scale = f"min {_number(min(known))}, max {_number(max(known))}, last {latest}"
        notes = "".join(
            f'<li class="{m.kind}"><span class="key {m.kind}"></span>{escape(m.label)} '
            f"({_date(m.day)})</li>"
            for m in markers
            if days[0] <= m.day <= days[-1]
        )
        notes = f'<ul class="marker-notes">{notes}</ul>' if notes else ""
        figures.append(
            f'<figure class="chart" data-signal="{signal}">{svg}'
            f"<figcaption><strong>{escape(title)}</strong> "
            f'<span class="muted">{scale}</span>{notes}</figcaption></figure>'
        )
    legend = [f"{_date(days[0])} – {_date(days[-1])}, UTC days"]
    if any(c < GOOD_COVERAGE for c in coverage):
        legend.append('<span class="key gap"></span>no data: not covered by successful polls')
    legend.append('<span class="key changepoint"></span>level shift of that chart\'s signal')
    return f'<div class="charts">{"".join(figures)}</div><p class="legend">{" · ".join(legend)}</p>'


FLOW_DESTINATIONS_SHOWN = 5


def _flows(snap: CommunitySnapshot) -> str:
    """Where its departed participants went: the top destinations of the 28-day window."""
    found = next((f for f in snap.flows if f.window == "28d"), None)
    if found is None:
        return (
            '<p class="muted">Not counted: this source\'s authors are not accounts that can '
            "be followed to another community (a feed), or flows are not computed yet.</p>"
        )
    k = found.min_authors
    if found.departed is None:
        return (
            f'<p class="muted">Fewer than {k} participants of the 4 weeks before went '
            "silent in the last 4 weeks (nothing smaller than that is shown).</p>"
        )
    went = [d for d in found.destinations if d.moved is not None][:FLOW_DESTINATIONS_SHOWN]
    lead = (
        f"<p>{found.departed} participants of the 4 weeks before did not post here in the "
        "last 4 weeks. "
    )
    if not went:
        return (
            lead + f"Fewer than {k} of them are active in another watched community of the "
            "same platform.</p>"
        )
    rows = "".join(
        f'<li><a href="{community_path(d.community)}">{escape(d.community)}</a> '
        f'<span class="share">{_percent(d.ratio)}</span> '
        f'<span class="muted">({d.moved} of {found.departed})</span></li>'
        for d in went
    )
    return (
        lead
        + "Active since in:</p>"
        + f'<ul class="flows" data-window="{escape(found.window)}">{rows}</ul>'
        + f'<p class="muted">Same platform only; counts under {k} are not shown.</p>'
    )


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


RISING_LISTED = 10


def _rising(view: CommunityView, snap: CommunitySnapshot) -> str:
    """The "Rising now" list: terms whose use rose most in the last 7 days."""
    api = f"/api/v1/communities/{quote(view.id, safe='')}/terms"
    if snap.terms is None:
        return '<p class="muted">Term counting is off (<code>[terms] enabled</code>).</p>'
    if not snap.rising_terms:
        return (
            '<p class="muted">No term rises above its baseline in the last 7 days (or there is '
            "no baseline yet).</p>"
        )
    items = "".join(
        f'<li data-term="{label}"><strong>{label}</strong> '
        f'<span class="muted">{t.count} posts, before {_rate(t.baseline_rate)}, '
        f"surprise {t.score:.1f}</span></li>"
        for t in snap.rising_terms[:RISING_LISTED]
        if (label := escape(term_label(t.term)))
    )
    return (
        f'<ol class="rising">{items}</ol><p class="muted small">Posts in the last 7 days '
        "holding the term, its share of posts in the 28 days before, and how surprising the "
        "rise is (Poisson log-likelihood). Only terms at least k distinct authors used are "
        f'counted. <a href="{api}">JSON</a></p>'
    )


def _rate(share: float) -> str:
    if share == 0:
        return "unseen"
    return f"{share:.1%}" if share >= 0.001 else "<0.1%"


def _section(view: CommunityView, *, now: int, simulated: bool, detail: bool = False) -> str:
    verdict = view.verdict
    badge = f'<span class="verdict {verdict.replace(" ", "-")}">{VERDICT_WORDS[verdict]}</span>'
    simulated_tag = '<span class="simulated-tag">simulated data</span>' if simulated else ""
    if view.snapshot is None:
        body = f'<div class="body"><div class="left">{_not_analysed(view)}</div></div>'
    else:
        rising = f"<h3>Rising now</h3>{_rising(view, view.snapshot)}" if detail else ""
        body = (
            f'<div class="body"><div class="left">{_facts(view.snapshot, now=now)}'
            f"<h3>Out of line now</h3>{_conditions(view)}{rising}"
            f"<h3>Where departed participants went</h3>{_flows(view.snapshot)}</div>"
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


def community_path(community_id: str) -> str:
    return "/community/" + quote(community_id, safe="")


class SortBy(StrEnum):
    """The status table's columns, as the ``sort`` query parameter names them."""

    community = "community"
    source = "source"
    status = "status"
    out_of_line = "out_of_line"
    last_success = "last_success"
    participants_7d = "participants_7d"
    posts_7d = "posts_7d"
    participants_change = "participants_change"
    posts_change = "posts_change"
    sentiment_7d = "sentiment_7d"
    coverage_7d = "coverage_7d"


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


STATUS_RANK = {
    "down": 0,
    "declining": 1,
    "not analysed": 2,
    "warming up": 3,
    "growing": 4,
    "steady": 5,
}
"""Sorting by status ascending puts what needs a look first."""
NONE = '<span class="muted">–</span>'


def _week(view: CommunityView) -> WindowActivity | None:
    return view.snapshot.windows.get("7d") if view.snapshot is not None else None


def _change(view: CommunityView, signal: str) -> float | None:
    if view.snapshot is None:
        return None
    for trend in view.snapshot.trends:
        if trend.signal == signal and trend.window == "7d":
            return trend.ratio
    return None


def _count_cell(view: CommunityView, pick: Callable[[WindowActivity], int]) -> str:
    if view.snapshot is None:
        return NONE
    week = _week(view)
    return str(pick(week)) if week is not None else UNKNOWN_SHORT


def _change_cell(view: CommunityView, signal: str) -> str:
    ratio = _change(view, signal)
    if ratio is None:
        return NONE if view.snapshot is None else '<span class="muted">n/a</span>'
    tone = "down" if ratio < 0.75 else "up" if ratio >= 1.25 else "flat"
    return f'<span class="ratio {tone}">{ratio:.0%}</span>'


def _last_success_cell(view: CommunityView, *, now: int) -> str:
    at = view.snapshot.last_success_at if view.snapshot is not None else None
    if at is None:
        return NONE if view.snapshot is None else "never"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f'<span title="{stamp}">{describe_duration(now - at)} ago</span>'


def _badge(verdict: str) -> str:
    return f'<span class="verdict {verdict.replace(" ", "-")}">{VERDICT_WORDS[verdict]}</span>'


UNKNOWN_SHORT = '<span class="muted">unknown</span>'
"""A 7-day count no successful poll covered (the legend says so)."""


@dataclass(frozen=True)
class Column:
    key: SortBy
    title: str
    first: Order
    """The order a click on the heading sorts by first (what needs a look on top)."""
    value: Callable[[CommunityView, int], float | str | None]
    """What the column sorts by; None sorts last in either order."""
    cell: Callable[[CommunityView, int], str]


def _sentiment(view: CommunityView) -> float | None:
    week = _week(view)
    return week.sentiment_mean if week is not None else None


def _coverage(view: CommunityView) -> float | None:
    return view.snapshot.coverage.get("7d") if view.snapshot is not None else None


COLUMNS = [
    Column(
        SortBy.community,
        "Community",
        Order.asc,
        lambda v, now: v.id,
        lambda v, now: f'<a href="{community_path(v.id)}">{escape(v.id)}</a>',
    ),
    Column(
        SortBy.source, "Source", Order.asc, lambda v, now: v.source, lambda v, now: escape(v.source)
    ),
    Column(
        SortBy.status,
        "Status",
        Order.asc,
        lambda v, now: STATUS_RANK[v.verdict],
        lambda v, now: _badge(v.verdict),
    ),
    Column(
        SortBy.out_of_line,
        "Out of line now",
        Order.desc,
        lambda v, now: len(v.conditions),
        lambda v, now: ", ".join(
            escape(alert) for alert in dict.fromkeys(c.alert for c in v.conditions)
        ),
    ),
    Column(
        SortBy.last_success,
        "Last successful poll",
        Order.asc,
        lambda v, now: v.snapshot.last_success_at if v.snapshot is not None else None,
        lambda v, now: _last_success_cell(v, now=now),
    ),
    Column(
        SortBy.participants_7d,
        "Participants, 7 days",
        Order.desc,
        lambda v, now: w.active_participants if (w := _week(v)) is not None else None,
        lambda v, now: _count_cell(v, lambda w: w.active_participants),
    ),
    Column(
        SortBy.posts_7d,
        "Posts, 7 days",
        Order.desc,
        lambda v, now: w.posts if (w := _week(v)) is not None else None,
        lambda v, now: _count_cell(v, lambda w: w.posts),
    ),
    Column(
        SortBy.participants_change,
        "Participants vs baseline",
        Order.asc,
        lambda v, now: _change(v, "active_participants"),
        lambda v, now: _change_cell(v, "active_participants"),
    ),
    Column(
        SortBy.posts_change,
        "Posts vs baseline",
        Order.asc,
        lambda v, now: _change(v, "posts"),
        lambda v, now: _change_cell(v, "posts"),
    ),
    Column(
        SortBy.sentiment_7d,
        "Sentiment, 7 days",
        Order.asc,
        lambda v, now: _sentiment(v),
        lambda v, now: _signed(_sentiment(v)) if v.snapshot is not None else NONE,
    ),
    Column(
        SortBy.coverage_7d,
        "Coverage, 7 days",
        Order.asc,
        lambda v, now: _coverage(v),
        lambda v, now: _percent(_coverage(v)) if v.snapshot is not None else NONE,
    ),
]
COLUMN_BY_KEY = {column.key: column for column in COLUMNS}


def sorted_views(
    views: Sequence[CommunityView], *, sort: SortBy, order: Order | None, now: int
) -> list[CommunityView]:
    """``views`` by the column ``sort`` (ties by id), unknown values last whatever the order."""
    column = COLUMN_BY_KEY[sort]
    by_id = sorted(views, key=lambda v: v.id)
    known = [(column.value(v, now), v) for v in by_id]
    ranked = sorted(
        (pair for pair in known if pair[0] is not None),
        key=lambda pair: pair[0],  # type: ignore[arg-type,return-value]
        reverse=(order or column.first) is Order.desc,
    )
    return [v for _, v in ranked] + [v for value, v in known if value is None]


def _heading(column: Column, *, sort: SortBy, order: Order) -> str:
    if column.key is not sort:
        link = f"/?sort={column.key.value}&amp;order={column.first.value}"
        return f'<th><a href="{link}">{column.title}</a></th>'
    flipped = Order.desc if order is Order.asc else Order.asc
    link = f"/?sort={column.key.value}&amp;order={flipped.value}"
    arrow, aria = ("▲", "ascending") if order is Order.asc else ("▼", "descending")
    return f'<th aria-sort="{aria}"><a href="{link}">{column.title} {arrow}</a></th>'


def _row(view: CommunityView, *, now: int) -> str:
    cells = "".join(f"<td>{c.cell(view, now)}</td>" for c in COLUMNS)
    return (
        f'<tr data-community="{escape(view.id)}" data-verdict="{escape(view.verdict)}">{cells}</tr>'
    )


def _summary_table(views: Sequence[CommunityView], *, sort: SortBy, order: Order, now: int) -> str:
    headings = "".join(_heading(c, sort=sort, order=order) for c in COLUMNS)
    rows = "".join(_row(v, now=now) for v in sorted_views(views, sort=sort, order=order, now=now))
    return (
        f'<div class="table-wrap"><table class="summary"><thead><tr>{headings}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        '<p class="legend">A community\'s own page has its facts, last error and 90-day charts. '
        "Change: the last 7 days against the 4 weeks before (n/a while that baseline is "
        "shorter than 3 weeks or has gaps); unknown: no successful poll covered any of the "
        "7 days. Sort by a heading; a second click reverses it.</p>"
    )


def _page(
    *,
    title: str,
    heading: str,
    status_line: str,
    nav: str,
    body: str,
    presentation: Presentation,
    now: int,
    version: str,
    authors_counted_since: int | None,
) -> str:
    banner = (
        '<p class="simulated-banner" role="note"><strong>Simulated data.</strong> '
        "This is <code>forum-monitor demo</code>: its communities are generated offline and "
        "served by a fake forum on 127.0.0.1; the monitor polls them through its real "
        "adapters.</p>"
        if presentation.simulated
        else ""
    )
    title += " (simulated data)" if presentation.simulated else ""
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>{escape(title)}</title><style>{stylesheet()}</style></head><body>"
        f'<header class="top"><h1>{heading}</h1><p class="muted">{status_line} · '
        f"as of {datetime.fromtimestamp(now, UTC).strftime('%Y-%m-%d %H:%M UTC')} · "
        f"refreshes every minute</p><nav>{nav}</nav></header>"
        f"{banner}{_key_notice(authors_counted_since, now=now)}<main>{body}</main>"
        f'<footer class="muted">forum-monitor {escape(version)} · "Out of line" shows the '
        "alert rules' conditions as they hold now (without their <code>for:</code> "
        "delays).</footer></body></html>"
    )


def render_status_page(
    views: Sequence[CommunityView],
    *,
    presentation: Presentation,
    now: int,
    version: str,
    authors_counted_since: int | None = None,
    sort: SortBy = SortBy.status,
    order: Order | None = None,
) -> str:
    """Every community, one row each, sorted by ``sort`` (in its column's first order
    unless ``order`` says)."""
    counts: dict[str, int] = {}
    for view in views:
        counts[view.verdict] = counts.get(view.verdict, 0) + 1
    summary = ", ".join(f"{n} {VERDICT_WORDS[v]}" for v, n in sorted(counts.items()))
    body = (
        _summary_table(views, sort=sort, order=order or COLUMN_BY_KEY[sort].first, now=now)
        if views
        else '<p class="calm">No enabled communities configured.</p>'
    )
    return _page(
        title="forum-monitor status",
        heading="forum-monitor",
        status_line=f"{len(views)} communities{': ' + summary if summary else ''}",
        nav='<a href="/metrics">/metrics</a> <a href="/api/v1/communities">JSON API</a> '
        '<a href="/docs">API docs</a>',
        body=body,
        presentation=presentation,
        now=now,
        version=version,
        authors_counted_since=authors_counted_since,
    )


def render_community_page(
    view: CommunityView,
    *,
    presentation: Presentation,
    now: int,
    version: str,
    authors_counted_since: int | None = None,
) -> str:
    """One community: its facts, what is out of line, 90 days of charts."""
    community = escape(view.id)
    return _page(
        title=f"{view.id} · forum-monitor status",
        heading=f'<a href="/">forum-monitor</a> › {community}',
        status_line=VERDICT_WORDS[view.verdict],
        nav='<a href="/">all communities</a> '
        f'<a href="/api/v1/communities/{quote(view.id, safe="")}">JSON</a> '
        '<a href="/docs">API docs</a>',
        body=_section(view, now=now, simulated=presentation.simulated, detail=True),
        presentation=presentation,
        now=now,
        version=version,
        authors_counted_since=authors_counted_since,
    )
