"""The evidence report as one self-contained HTML file: inline CSS, inline SVG, no script.

The page is a list of sections (``SECTIONS``), each a function of the gathered
``Evidence`` (and the open store, for a section that reads more of it) returning a
``Section`` or None when it has nothing to say. A new section is one function and one
entry in the list. Every text that comes from a config, the store or a source (community
ids, URLs, scopes, error messages) is escaped here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from importlib import resources

from sqlmodel import Session

from monitor.analysis.cusum import DECLINE_SCORE_THRESHOLD, LONG_Z, SHORT_Z
from monitor.analysis.rollups import DAY
from monitor.analysis.snapshot import DayActivity
from monitor.analysis.terms import term_label
from monitor.analysis.trends import GOOD_COVERAGE
from monitor.report.evidence import ChangeFound, DeclineFound, Evidence
from monitor.report.power import MEASURED, MeasuredPower, rows_around
from monitor.web.charts import (
    REPORT_SIZE,
    Marker,
    day_chart,
    iso_day,
    percent,
    plain_number,
)


@dataclass(frozen=True)
class Section:
    key: str
    """The section's id in the page (``#key``)."""
    title: str
    body: str
    """HTML, everything untrusted in it escaped."""


@dataclass(frozen=True)
class ReportContext:
    evidence: Evidence
    session: Session
    """The store, open while the sections render."""
    version: str


SectionRenderer = Callable[[ReportContext], Section | None]


@dataclass(frozen=True)
class Series:
    signal: str
    title: str
    unit: str
    pick: Callable[[DayActivity], float | None]
    floor_zero: bool = True
    value_format: Callable[[float], str] = plain_number
    definition: str = ""


SERIES = [
    Series(
        "posts",
        "Posts per day",
        "posts per UTC day",
        lambda d: d.posts,
        definition="thread starts and replies created that UTC day, by the posts' own "
        "timestamps (not when they were fetched); deleted posts count, edits do not add",
    ),
    Series(
        "threads_started",
        "Threads started per day",
        "threads per UTC day",
        lambda d: d.threads_started,
        definition="thread starts among those posts",
    ),
    Series(
        "replies",
        "Replies per day",
        "replies per UTC day",
        lambda d: d.replies,
        definition="replies among those posts (posts minus thread starts)",
    ),
    Series(
        "active_participants",
        "Active participants per day",
        "distinct authors per UTC day",
        lambda d: d.active_participants,
        definition="distinct authors who posted that day, counted by keyed pseudonym "
        "(posts without an author, e.g. deleted ones, count as posts but not here)",
    ),
    Series(
        "new_participants",
        "New participants per day",
        "first-time authors per UTC day",
        lambda d: d.new_participants,
        definition="authors whose first post seen in this community falls on that day",
    ),
    Series(
        "sentiment_mean",
        "Mean sentiment per day",
        "mean score, -1 to 1",
        lambda d: d.sentiment_mean,
        floor_zero=False,
        value_format=lambda v: f"{v:+.2f}" if v else "0",
        definition="mean VADER compound score of the day's scored posts, from -1 (most "
        "negative) to +1 (most positive); empty and deleted posts are not scored",
    ),
    Series(
        "negative_ratio",
        "Negative share per day",
        "% of scored posts",
        lambda d: d.negative_ratio,
        value_format=percent,
        definition="share of the day's scored posts with a negative score",
    ),
]
COVERAGE_DEFINITION = (
    "share of the UTC day that successful polls covered: a poll that paged back to where the "
    "previous one ended covers the time in between, so data is complete for it"
)


def _day(epoch: int | None) -> str:
    return "never" if epoch is None else iso_day(epoch)


def _moment(epoch: int | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _level(value: float, signal: str) -> str:
    return f"{value:+.3f}" if signal == "sentiment_mean" else f"{value:.1f}"


SIGNAL_NAMES = {s.signal: s.title.removesuffix(" per day").lower() for s in SERIES}
SIGNAL_UNITS = {s.signal: s.unit.replace(" per UTC day", "/day") for s in SERIES}


def _shift(change: ChangeFound) -> str:
    if change.shift_ratio == float("inf"):
        return "from a zero level"
    scale = " on the 1 + score scale" if change.signal == "sentiment_mean" else ""
    return f"{change.shift_ratio:.0%} of the level before{scale}"


def change_label(change: ChangeFound) -> str:
    """A change point's marker label, short enough for the chart's top band."""
    ratio = "from zero" if change.shift_ratio == float("inf") else f"{change.shift_ratio:.0%}"
    return f"level shift {iso_day(change.onset)}: {ratio} of before"


def decline_label(decline: DeclineFound) -> str:
    return f"decline since {iso_day(decline.onset)}"


def markers_for(evidence: Evidence, signal: str) -> list[Marker]:
    """The change point and decline onset of ``signal`` only."""
    found = [
        Marker(c.onset, change_label(c), "changepoint")
        for c in evidence.changes
        if c.signal == signal
    ]
    found += [
        Marker(d.onset, decline_label(d), "decline")
        for d in evidence.declines
        if d.signal == signal and d.declining and evidence.since <= d.onset < evidence.until
    ]
    return found


def summary_section(context: ReportContext) -> Section:
    evidence = context.evidence
    counted = evidence.counted_days
    days = len(evidence.daily)
    lines = [
        f"<p>{escape(evidence.community)} ({escape(evidence.provenance.source)}), "
        f"{iso_day(evidence.since)} to {iso_day(evidence.until - 86400)}: {days} UTC days, "
        f"{len(counted)} of them covered well enough to count (at least "
        f"{GOOD_COVERAGE:.0%} of the day).</p>"
    ]
    if counted:
        per_day = evidence.posts_per_day or 0.0
        lines.append(
            f"<p>On the counted days: {sum(d.posts for d in counted)} posts "
            f"({per_day:.1f} a day), {sum(d.threads_started for d in counted)} threads "
            f"started, up to {max(d.active_participants for d in counted)} distinct authors "
            "a day.</p>"
        )
    findings = []
    for change in evidence.changes:
        unit = SIGNAL_UNITS[change.signal]
        findings.append(
            f"<li><strong>{SIGNAL_NAMES[change.signal]}</strong>: level shift from "
            f"{iso_day(change.onset)}, {_level(change.level_before, change.signal)} → "
            f"{_level(change.level_after, change.signal)} {escape(unit)} "
            f"({_shift(change)}).</li>"
        )
    for decline in evidence.declines:
        if decline.declining:
            findings.append(
                f"<li><strong>{SIGNAL_NAMES[decline.signal]}</strong>: decline score "
                f"{decline.score:.2f} on {iso_day(evidence.until - 86400)} (above "
                f"{DECLINE_SCORE_THRESHOLD:g}: declining), decline since "
                f"{iso_day(decline.onset)}.</li>"
            )
    if findings:
        lines.append(f'<ul class="findings">{"".join(findings)}</ul>')
    elif evidence.declines:
        lines.append("<p>No level shift in the period and no signal declining at its end.</p>")
    else:
        lines.append(
            "<p>No level shift in the period; the decline score is withheld at its end (the "
            "last day or too much of the baseline was not covered), so nothing is said about "
            "a decline.</p>"
        )
    if evidence.gaps:
        listed = ", ".join(_gap_text(g.first, g.last) for g in evidence.gaps)
        lines.append(f"<p>Not covered (drawn as gaps, never as zero): {listed}.</p>")
    return Section("summary", "Summary", "".join(lines))


def _gap_text(first: int, last: int) -> str:
    return iso_day(first) if first == last else f"{iso_day(first)} – {iso_day(last)}"


def series_section(context: ReportContext) -> Section | None:
    evidence = context.evidence
    if not evidence.daily:
        return None
    days = [d.day for d in evidence.daily]
    coverage = [d.coverage for d in evidence.daily]
    figures = []
    for series in SERIES:
        markers = markers_for(evidence, series.signal)
        svg = day_chart(
            days=days,
            values=[series.pick(d) for d in evidence.daily],
            coverage=coverage,
            title=f"{series.title}, {evidence.community}",
            unit=series.unit,
            markers=markers,
            floor_zero=series.floor_zero,
            size=REPORT_SIZE,
            value_format=series.value_format,
        )
        figures.append(_figure(series.signal, series.title, svg, markers))
    coverage_svg = day_chart(
        days=days,
        values=coverage,
        coverage=[1.0] * len(days),  # coverage is known for every day, 0 included
        title=f"Coverage per day, {evidence.community}",
        unit="% of the UTC day covered by successful polls",
        size=REPORT_SIZE,
        value_format=percent,
    )
    figures.append(_figure("coverage", "Coverage per day", coverage_svg, []))
    key = (
        '<p class="legend"><span class="key gap"></span>no data: a day successful polls '
        f"covered less than {GOOD_COVERAGE:.0%} of (left blank, never drawn as zero) · "
        '<span class="key changepoint"></span>level shift of that chart\'s signal · '
        '<span class="key decline"></span>start of a decline the decline score flags · '
        "x axis: UTC days</p>"
    )
    return Section("series", "Daily series", key + "".join(figures))


def _figure(signal: str, title: str, svg: str, markers: Sequence[Marker]) -> str:
    notes = "".join(f'<li class="{escape(m.kind)}">{escape(m.label)}</li>' for m in markers)
    listed = f'<ul class="marker-notes">{notes}</ul>' if notes else ""
    return (
        f'<figure class="chart" data-signal="{escape(signal)}">'
        f"<figcaption>{escape(title)}</figcaption>{svg}{listed}</figure>"
    )


def changes_section(context: ReportContext) -> Section:
    evidence = context.evidence
    if not evidence.changes:
        body = (
            "<p>No level shift with its onset in the period (signals checked: posts, active "
            "participants, mean sentiment).</p>"
        )
        return Section("changes", "Change points", body)
    rows = "".join(
        f'<tr data-signal="{c.signal}"><td>{SIGNAL_NAMES[c.signal]}</td>'
        f"<td>{iso_day(c.onset)}</td><td>{iso_day(c.drop)}</td>"
        f"<td>{_level(c.level_before, c.signal)}</td><td>{_level(c.level_after, c.signal)}</td>"
        f"<td>{escape(SIGNAL_UNITS[c.signal])}</td><td>{_shift(c)}</td></tr>"
        for c in evidence.changes
    )
    body = (
        '<table class="data"><thead><tr><th>signal</th><th>onset (first day at the new '
        "level)</th><th>first day of the drop</th><th>level before</th><th>level after</th>"
        "<th>unit</th><th>shift</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        "<p>Levels are means of the segments before and after the onset with the weekly "
        "rhythm taken out. Each change point is marked on its own signal's chart only.</p>"
    )
    return Section("changes", "Change points", body)


def decline_section(context: ReportContext) -> Section:
    evidence = context.evidence
    last = iso_day(evidence.until - 86400)
    if not evidence.declines:
        body = (
            f"<p>No decline score on {last}: it is withheld when that day was not covered "
            "or fewer than 21 days of its baseline were (an outage is never read as a "
            "decline).</p>"
        )
        return Section("decline", "Decline score", body)
    rows = "".join(
        f'<tr data-signal="{d.signal}"><td>{SIGNAL_NAMES[d.signal]}</td><td>{d.score:.2f}</td>'
        f"<td>{'declining' if d.declining else 'not declining'}</td>"
        f"<td>{iso_day(d.onset) if d.declining else '–'}</td></tr>"
        for d in evidence.declines
    )
    body = (
        f"<p>As the service computed it on {last}, the period's last day.</p>"
        '<table class="data"><thead><tr><th>signal</th><th>decline score</th><th>state'
        "</th><th>decline since</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return Section("decline", "Decline score", body)


def flows_section(context: ReportContext) -> Section | None:
    """Where departed participants went: only for a community with a platform namespace."""
    evidence = context.evidence
    flows = evidence.flows
    if flows is None or evidence.flows_at is None:
        return None
    k = flows.min_authors
    end = evidence.flows_at
    intro = (
        f"<p>Over the 28 days to the end of the period ({iso_day(end - 28 * DAY)} to "
        f"{iso_day(end - 1)}): an author <em>departed</em> when their last post here before "
        "the end of the period was in the 28 days before those; a destination's share is the "
        "part of them who posted in that community in those 28 days. Authors are matched by "
        "a keyed pseudonym shared by the communities of one platform "
        f"({escape(flows.namespace)}) only, never across platforms, and no number resting "
        f"on fewer than {k} authors is shown (a share of 0 may mean fewer than {k} moved).</p>"
    )
    if flows.departed is None:
        return Section(
            "flows",
            "Where departed participants went",
            intro + f"<p>Fewer than {k} participants departed: nothing is shown.</p>",
        )
    rows = "".join(
        f"<tr><td>{escape(d.community)}</td>"
        f"<td>{'–' if d.ratio is None else percent(d.ratio)}</td>"
        f"<td>{'–' if d.moved is None else d.moved}</td>"
        f"<td>{'–' if d.shared is None else d.shared}</td></tr>"
        for d in flows.destinations
    )
    table = (
        '<table class="data"><thead><tr><th>to community</th><th>share of the departed'
        "</th><th>departed authors active there</th><th>authors active in both</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p>No watched community of the same platform received any of them.</p>"
    )
    body = intro + f"<p>{flows.departed} participants departed.</p>" + table
    return Section("flows", "Where departed participants went", body)


def terms_section(context: ReportContext) -> Section | None:
    """What the community talked about more than before, at the end of the period."""
    evidence = context.evidence
    found = evidence.rising_terms
    if found is None:
        return None
    last = evidence.until - 86400
    intro = (
        f"<p>Words and two-word phrases whose use rose most in the 7 days to {iso_day(last)} "
        "against the 28 days before them: posts holding the term, its share of the "
        "baseline's posts, the posts expected at that share, and the Poisson "
        "log-likelihood surprise of the count against that expectation (larger rises more). "
        "Terms already common in the baseline are left out. Only counts of terms that "
        "enough distinct authors used around a day are ever kept, and no text is stored, "
        "so no term points to one person.</p>"
    )
    if not found:
        body = intro + "<p>Nothing rose (or the baseline was too short to tell).</p>"
        return Section("terms", "Rising terms", body)
    rows = "".join(
        f"<tr><td>{escape(term_label(t.term))}</td><td>{t.count}</td>"
        f"<td>{t.baseline_rate:.1%}</td><td>{t.expected:.1f}</td><td>{t.score:.1f}</td></tr>"
        for t in found
    )
    body = intro + (
        '<table class="data"><thead><tr><th>term</th><th>posts in the 7 days</th>'
        "<th>baseline share</th><th>expected posts</th><th>surprise</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return Section("terms", "Rising terms", body)


def coverage_section(context: ReportContext) -> Section:
    evidence = context.evidence
    if not evidence.gaps:
        body = (
            f"<p>Every day of the period was covered (at least {GOOD_COVERAGE:.0%} of each "
            "day by successful polls).</p>"
        )
        return Section("coverage", "Coverage", body)
    rows = "".join(
        f'<tr class="gap-row" data-gap="{iso_day(g.first)}/{iso_day(g.last)}">'
        f"<td>{iso_day(g.first)}</td><td>{iso_day(g.last)}</td><td>{g.days}</td>"
        f"<td>{g.coverage:.0%}</td></tr>"
        for g in evidence.gaps
    )
    body = (
        "<p>Days covered less than "
        f"{GOOD_COVERAGE:.0%} are gaps: their counts are unknown or partial, so the charts "
        "leave them blank, and the change points and decline score skip them (an outage is "
        "never read as a decline).</p>"
        '<table class="data"><thead><tr><th>first day</th><th>last day</th><th>days</th>'
        f"<th>mean coverage</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return Section("coverage", "Coverage gaps", body)


def _power_row(row: MeasuredPower) -> str:
    return (
        f"<tr><td>{row.posts_per_day}</td><td>{row.halving_within_3_days:.0%}</td>"
        f"<td>{row.fifth_within_10_days:.0%}</td><td>{row.fifth_within_14_days:.0%} / "
        f"{row.fifth_within_21_days:.0%}</td><td>{row.false_alarms_per_90_days:.3f} / "
        f"{row.false_alarms_per_90_days_with_outages:.3f}</td></tr>"
    )


def power_paragraph(posts_per_day: float | None) -> str:
    """The decline benchmark's rows at this community's size, in words and as a table."""
    if posts_per_day is None:
        return (
            "<p>No day of the detector's baseline counts, so the community's size, and what "
            "the detector can find at it, is unknown.</p>"
        )
    rows = rows_around(posts_per_day)
    sizes = " and ".join(f"{r.posts_per_day}" for r in rows)
    where = f"between the measured sizes {sizes}" if len(rows) == 2 else f"nearest {sizes}"
    if posts_per_day < MEASURED[0].posts_per_day:
        where = f"below the smallest measured size ({MEASURED[0].posts_per_day}); expect less"
    table = (
        '<table class="data power"><thead><tr><th>posts/day</th><th>50% drop flagged '
        "within 3 days, onset ±2 days</th><th>20% drop flagged within 10 days</th>"
        "<th>… within 14 / 21 days</th><th>false alarms per 90 days (steady / with "
        f"outages)</th></tr></thead><tbody>{''.join(_power_row(r) for r in rows)}</tbody>"
        "</table>"
    )
    return (
        f"<p>This community had {posts_per_day:.1f} posts a day on the counted days of the "
        "detector's baseline (the 92 days before the last 28 of the 120 it sees), "
        f"{where} posts/day in the decline benchmark (<code>python -m bench decline</code>, "
        "300 simulated series per case with Poisson noise and a weekly rhythm, run day by "
        "day as the service runs). Measured there:</p>" + table
    )


def methods_section(context: ReportContext) -> Section:
    definitions = "".join(
        f"<dt>{escape(s.title)} ({escape(s.unit)})</dt><dd>{escape(s.definition)}</dd>"
        for s in SERIES
    )
    definitions += (
        f"<dt>Coverage per day (%)</dt><dd>{escape(COVERAGE_DEFINITION)}</dd>"
        f"<dt>Counted day</dt><dd>a day covered at least {GOOD_COVERAGE:.0%}; only counted "
        "days enter the levels, change points and decline score</dd>"
        "<dt>Level shift (change point)</dt><dd>the latest day from which a signal holds a "
        "different level: PELT segmentation (ruptures, linear kernel) of the counted days on "
        "the Anscombe square-root scale with the weekly rhythm removed and scaled by the "
        "day-to-day noise; onset is the first day at the new level, shift the level after "
        "divided by the level before (for sentiment on the 1 + score scale)</dd>"
        "<dt>Decline score</dt><dd>how far the last days sit below the 92 days before the "
        "last 28: the larger of the 10-day z-score divided by "
        f"{LONG_Z:g} and the 3-day z-score divided by {SHORT_Z:g}, both on the square-root "
        f"scale with the weekly rhythm removed; above {DECLINE_SCORE_THRESHOLD:g} is a "
        "decline (the alert rule's condition). Decline since: the first day of the run of "
        "low days behind the score, or the change point's drop when that lies earlier</dd>"
    )
    body = (
        f'<dl class="definitions">{definitions}</dl>'
        "<h3>What the detector can find at this size</h3>"
        f"{power_paragraph(context.evidence.baseline_posts_per_day)}"
        "<p>Authors are only ever stored as keyed pseudonyms (HMAC-SHA256); no post body or "
        "name enters this report.</p>"
    )
    return Section("methods", "Methods", body)


def provenance_section(context: ReportContext) -> Section:
    found = context.evidence.provenance
    polls = ", ".join(
        f"{count} {escape(outcome)}" for outcome, count in sorted(found.polls_in_period.items())
    )
    rows = [
        ("Source kind", escape(found.source)),
        (
            "Endpoints",
            "<br>".join(f'<code class="url">{escape(url)}</code>' for url in found.endpoints)
            or "–",
        ),
        (
            "Scope",
            ", ".join(f"{escape(k)} = <code>{escape(v)}</code>" for k, v in found.scope) or "–",
        ),
        ("Watched since", _moment(found.watched_since)),
        ("First poll", _moment(found.first_poll)),
        ("Last poll", _moment(found.last_poll)),
        ("Last successful poll", _moment(found.last_success)),
        ("Last error", escape(found.last_error) if found.last_error else "none"),
        ("Polls started in the period", polls or "none"),
        ("Requests in the period", str(found.requests_in_period)),
        ("Requests since watched", str(found.requests_total)),
        ("Store read", f"<code>{escape(found.store)}</code>"),
    ]
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return Section("provenance", "Data provenance", f'<dl class="facts">{items}</dl>')


def reproduce_section(context: ReportContext) -> Section:
    body = (
        "<p>Run against the same store, this command writes this report again (later polls "
        "that fill a gap change the numbers they cover, and say so here):</p>"
        f'<pre class="command"><code>{escape(context.evidence.command)}</code></pre>'
    )
    return Section("reproduce", "Reproduce", body)


SECTIONS: list[SectionRenderer] = [
    summary_section,
    series_section,
    changes_section,
    decline_section,
    flows_section,
    terms_section,
    coverage_section,
    methods_section,
    provenance_section,
    reproduce_section,
]
"""The report's sections in page order; a renderer returning None is left out."""


def stylesheet() -> str:
    return resources.files("monitor.report").joinpath("report.css").read_text(encoding="utf-8")


def render_report(context: ReportContext, *, sections: Sequence[SectionRenderer] = SECTIONS) -> str:
    evidence = context.evidence
    shown = [s for s in (render(context) for render in sections) if s is not None]
    contents = "".join(f'<li><a href="#{s.key}">{escape(s.title)}</a></li>' for s in shown)
    body = "".join(
        f'<section id="{escape(s.key)}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in shown
    )
    period = f"{iso_day(evidence.since)} to {iso_day(evidence.until - 86400)}"
    title = f"Evidence report: {evidence.community}, {period}"
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{stylesheet()}</style></head><body>"
        f'<header class="top"><h1>Evidence report: {escape(evidence.community)}</h1>'
        f'<p class="period">{period} (UTC days) · {escape(evidence.provenance.source)} · '
        f"generated {_moment(evidence.generated_at)} by forum-monitor "
        f"{escape(context.version)}</p>"
        f'<nav><ol class="contents">{contents}</ol></nav></header>'
        f"<main>{body}</main></body></html>"
    )
