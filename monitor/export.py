"""The store's daily history as OpenMetrics, for ``promtool tsdb create-blocks-from openmetrics``.

A community added today has weeks of history in the store after its first poll
(``history_days``), but Prometheus only holds what it scraped since. Loading this
export into Prometheus's storage lets the panels show that past.

What is exported, per enabled community and complete UTC day D, as one sample at
the day's end (D + 86400, the instant at which the live window ``[now - W, now)``
ends exactly at that midnight), under the live exporter's names and labels
(``community``, ``source``, ``window``):

=================================  ==========  ====================================
metric                             windows     from the days in the window
=================================  ==========  ====================================
forum_posts                        1d 7d 28d   sum of the days' posts
forum_threads_started              1d 7d 28d   sum of the days' threads started
forum_new_participants             1d 7d 28d   sum (first-seen days never overlap)
forum_active_participants          1d          the day's distinct authors
forum_sentiment_mean               1d 7d 28d   sentiment sum / scored posts
forum_sentiment_negative_ratio     1d 7d 28d   negative posts / scored posts
forum_coverage_ratio               1d 7d 28d   share covered by successful polls
=================================  ==========  ====================================

Every value equals what the live gauge would have read at that midnight from the
store as it is now (coverage included, so an outage that a later poll filled in
counts as covered). The per-day values come from the same daily series the trends
use (``monitor.analysis.snapshot.daily_series``: rollups with gaps filled, coverage
from the poll history); the wider windows add up the days' rollup sums, which is
exact for everything above and cheap (no post is read).

Not exported, and why:

- ``forum_active_participants`` for 7d/28d: distinct authors over several days are
  not the sum of each day's distinct authors; it would need a scan of the posts of
  every window (one index range per day and window), which the rollups avoid.
- ``forum_returning_participants_ratio``, ``forum_thread_*_avg``,
  ``forum_unanswered_threads_ratio``, ``forum_first_reply_median_seconds``,
  ``forum_keyword_*``: they need per-author, per-thread or per-keyword data that the
  daily rollups do not keep.
- ``forum_activity_change_ratio`` and ``forum_changepoint_*``: they could be
  recomputed per past day from the same series, but only with hindsight (today's
  coverage and rollups), and the alert rules use them live; left out for now.
- ``forum_last_post_timestamp_seconds`` and every ``forum_monitor_*`` series: a
  moment or a property of the collecting process, not of a day.

Undefined values (no scored post in the window) are left out, as the live exporter
does, and so is everything but ``forum_coverage_ratio`` for a window no successful
poll covered (``activity_known``): its activity is unknown, not zero. Days before a
community's first covered day or first post are not exported at all, so a panel
shows "no data" rather than zeros for a time nobody watched.

Format: OpenMetrics text, each family's ``# HELP``/``# TYPE`` then its samples, series
after series (sorted by community, window), timestamps increasing within a series,
``# EOF`` last. ``job``/``instance`` labels can be added so the backfilled samples
continue the scraped series instead of sitting beside them (Prometheus adds those two
labels at scrape time; an empty value leaves the label out).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from monitor.analysis.rollups import DAY, day_of
from monitor.analysis.snapshot import (
    DayActivity,
    activity_known,
    community_spans,
    daily_series,
)
from monitor.analysis.windows import WINDOWS
from monitor.config import CommunityBase, Settings
from monitor.errors import ForumMonitorError
from monitor.exporter import WINDOW_GAUGES
from monitor.store import db

WINDOW_DAYS = {name: seconds // DAY for name, seconds in WINDOWS.items()}
LONGEST_WINDOW_DAYS = max(WINDOW_DAYS.values())
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ExportError(ForumMonitorError):
    """The export cannot be made or written (bad arguments, unwritable file, empty store)."""


@dataclass(frozen=True)
class WindowValues:
    """The sums of the days in one window ending at a day's end."""

    posts: int
    threads_started: int
    new_participants: int
    sentiment_sum: float
    sentiment_count: int
    negative_posts: int
    coverage: float
    active_participants: int | None
    """Only for a single day: distinct authors do not add up across days."""


Pick = Callable[[WindowValues], float | None]


def _seen(pick: Pick) -> Pick:
    """``pick``, left out (None) for a window whose activity is unknown."""
    return lambda w: pick(w) if activity_known(w.coverage) else None


_HELP = {name: help_text for name, help_text, _ in WINDOW_GAUGES}
FAMILIES: list[tuple[str, str, Pick]] = [
    ("forum_posts", _HELP["forum_posts"], _seen(lambda w: w.posts)),
    ("forum_threads_started", _HELP["forum_threads_started"], _seen(lambda w: w.threads_started)),
    (
        "forum_active_participants",
        _HELP["forum_active_participants"],
        _seen(lambda w: w.active_participants),
    ),
    (
        "forum_new_participants",
        _HELP["forum_new_participants"],
        _seen(lambda w: w.new_participants),
    ),
    (
        "forum_sentiment_mean",
        _HELP["forum_sentiment_mean"],
        _seen(lambda w: w.sentiment_sum / w.sentiment_count if w.sentiment_count else None),
    ),
    (
        "forum_sentiment_negative_ratio",
        _HELP["forum_sentiment_negative_ratio"],
        _seen(lambda w: w.negative_posts / w.sentiment_count if w.sentiment_count else None),
    ),
    (
        "forum_coverage_ratio",
        "Share of the window covered by successful polls.",
        lambda w: w.coverage,
    ),
]
"""Exported families, in the live exporter's order."""


@dataclass(frozen=True)
class ExportSummary:
    communities: int
    series: int
    samples: int


def community_days(
    session: Session, *, community: CommunityBase, now: int, days: int
) -> list[DayActivity]:
    """The last ``days`` complete UTC days before ``now`` plus the 27 before them, oldest first.

    The extra days let the first exported day's 28d window be filled.
    """
    today = day_of(now)
    span_days = days + LONGEST_WINDOW_DAYS - 1
    spans = community_spans(session, community=community, since=today - span_days * DAY, now=now)
    return daily_series(
        session, community_id=community.id, spans=spans, today=today, days=span_days
    )


def window_values(window: Sequence[DayActivity]) -> WindowValues:
    """Add up ``window`` (consecutive days); the coverage is their mean, days being equal."""
    return WindowValues(
        posts=sum(d.posts for d in window),
        threads_started=sum(d.threads_started for d in window),
        new_participants=sum(d.new_participants for d in window),
        sentiment_sum=sum(d.sentiment_sum for d in window),
        sentiment_count=sum(d.sentiment_count for d in window),
        negative_posts=sum(d.negative_posts for d in window),
        coverage=sum(d.coverage for d in window) / len(window),
        active_participants=window[0].active_participants if len(window) == 1 else None,
    )


def first_watched(days: Sequence[DayActivity]) -> int | None:
    """Index of the first day that was covered by a poll or has a post; None if none is."""
    for index, day in enumerate(days):
        if day.coverage > 0 or day.posts > 0:
            return index
    return None


Series = tuple[tuple[tuple[str, str], ...], list[tuple[int, float]]]


def community_series(
    days: Sequence[DayActivity], *, exported: int, labels: Sequence[tuple[str, str]]
) -> dict[str, list[Series]]:
    """Samples by family for the last ``exported`` of ``days`` (which has 27 more before)."""
    watched = first_watched(days)
    start = max(len(days) - exported, len(days) if watched is None else watched)
    found: dict[str, list[Series]] = {name: [] for name, _, _ in FAMILIES}
    for window, width in WINDOW_DAYS.items():
        ends = [
            (days[index].day + DAY, window_values(days[index + 1 - width : index + 1]))
            for index in range(start, len(days))
        ]
        for name, _, pick in FAMILIES:
            samples = [(end, value) for end, values in ends if (value := pick(values)) is not None]
            if samples:
                found[name].append(((*labels, ("window", window)), samples))
    return found


def render(families: dict[str, list[Series]], *, extra: Sequence[tuple[str, str]]) -> Iterator[str]:
    """OpenMetrics lines (with newlines) of ``families``, in ``FAMILIES`` order, then EOF."""
    for name, help_text, _ in FAMILIES:
        series = families.get(name, [])
        if not series:
            continue
        yield f"# HELP {name} {_escape_help(help_text)}\n"
        yield f"# TYPE {name} gauge\n"
        for labels, samples in series:
            rendered = _labels([*labels, *((k, v) for k, v in extra if v)])
            for timestamp, value in samples:
                yield f"{name}{rendered} {_number(value)} {timestamp}\n"
    yield "# EOF\n"


def export_lines(
    session: Session,
    *,
    settings: Settings,
    now: int,
    days: int,
    extra_labels: Sequence[tuple[str, str]] = (),
) -> tuple[list[str], ExportSummary]:
    if days < 1:
        raise ExportError(f"--days must be at least 1, got {days}")
    for key, _ in extra_labels:
        if not _LABEL_NAME.match(key) or key in ("community", "source", "window"):
            raise ExportError(f"invalid extra label name {key!r}")
    families: dict[str, list[Series]] = {name: [] for name, _, _ in FAMILIES}
    communities = sorted((c for c in settings.communities if c.enabled), key=lambda c: c.id)
    for community in communities:
        history = community_days(session, community=community, now=now, days=days)
        labels = (("community", community.id), ("source", str(getattr(community, "source", ""))))
        for name, found in community_series(history, exported=days, labels=labels).items():
            families[name] += found
    lines = list(render(families, extra=extra_labels))
    summary = ExportSummary(
        communities=len(communities),
        series=sum(len(found) for found in families.values()),
        samples=sum(len(samples) for found in families.values() for _, samples in found),
    )
    return lines, summary


def write_export(
    *,
    settings: Settings,
    out: Path,
    now: int,
    days: int,
    extra_labels: Sequence[tuple[str, str]] = (),
) -> ExportSummary:
    """Export the store of ``settings`` to ``out`` (written whole or not at all)."""
    if days < 1:
        raise ExportError(f"--days must be at least 1, got {days}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        handle = partial.open("w", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with handle:
            engine = _open_store(settings)
            try:
                with Session(engine) as session:
                    lines, summary = export_lines(
                        session, settings=settings, now=now, days=days, extra_labels=extra_labels
                    )
            finally:
                engine.dispose()
            handle.writelines(lines)
        os.replace(partial, out)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return summary


def _open_store(settings: Settings) -> Engine:
    url = settings.resolved_database_url()
    engine = db.make_engine(url)
    if db.current_revision(engine) is None:
        engine.dispose()
        raise ExportError(
            f"{db.describe_url(url)} holds no forum-monitor store (run `forum-monitor db upgrade`"
            " and poll first)"
        )
    return engine


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in pairs)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
