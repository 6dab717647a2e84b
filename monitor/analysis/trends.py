"""Change ratios of a daily signal against its own recent past.

``forum_activity_change_ratio{signal, window}`` is the recent window of a daily
series set against a baseline taken from the 28 days just before that window:

- ``window`` W days (7d, 28d): the recent value is the per-day level over the
  last W complete UTC days; the baseline is the per-day level over the 28 days
  before them. Comparing per-day levels is the same as comparing the recent
  sum with the baseline "scaled to W days".
- ``window`` 1 day: the baseline is the same weekday in the 4 preceding weeks,
  because a Sunday compared with an average day would read as a decline every
  week.

Coverage gating, so that an outage is never read as a decline:

- a day *counts* only when it has a value and at least 90% of it was covered by
  successful polls (``GOOD_COVERAGE``); other days are left out, not zeroed;
- the ratio is absent (``None``) when fewer than 21 of the 28 baseline days
  count (a young community or a long outage), when, for 1d, fewer than 3 of the
  4 same-weekday days count, or when under 90% of the recent window counts.

Two kinds of signal (``SignalKind``):

- ``COUNT`` (posts, threads_started, active_participants): ratio of per-day
  means, 1.0 = as usual, 0.4 = 60% down.
- ``SCORE`` (sentiment_mean, in [-1, 1]): a plain ratio is meaningless near 0
  and flips sign across it, so the ratio is taken on the shifted scale
  ``1 + score`` (in [0, 2]): still 1.0 = as usual and below 1 = more negative,
  e.g. a mean going from 0.2 to 0.0 gives 1.0 / 1.2 = 0.83. Daily means are
  averaged unweighted, so a quiet day counts as much as a busy one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

DAY_SECONDS = 86_400
GOOD_COVERAGE = 0.9
"""Share of a day that successful polls must cover for the day to count."""
BASELINE_DAYS = 28
MIN_BASELINE_DAYS = 21
MIN_SAME_WEEKDAYS = 3
"""Of the 4 same-weekday days behind a 1d baseline (the 21-of-28 share)."""
MIN_RECENT_SHARE = 0.9


class SignalKind(StrEnum):
    COUNT = "count"
    SCORE = "score"


@dataclass(frozen=True)
class DailyPoint:
    """One UTC day of a signal."""

    day: int
    """Epoch seconds of the day's UTC midnight."""
    value: float | None
    """None when there is no data for the day."""
    coverage: float
    """Share (0..1) of the day covered by successful polls."""

    @property
    def counts(self) -> bool:
        """Whether the day is trusted: it has a value and enough poll coverage."""
        return self.value is not None and self.coverage >= GOOD_COVERAGE


def good_values(series: Iterable[DailyPoint]) -> dict[int, float]:
    """Values of the days that count, by day; later duplicates of a day win."""
    return {p.day: p.value for p in series if p.value is not None and p.counts}


def change_ratio(
    *,
    series: Sequence[DailyPoint],
    window_days: int,
    today: int,
    kind: SignalKind = SignalKind.COUNT,
) -> float | None:
    """Recent window against its 28-day baseline; None when coverage cannot support it.

    ``today`` is the UTC midnight of the current, incomplete day: the recent
    window is the ``window_days`` complete days before it.
    """
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    if today % DAY_SECONDS:
        raise ValueError(f"today must be a UTC midnight, got {today}")
    values = good_values(series)
    window_start = today - window_days * DAY_SECONDS
    recent = _values_between(values, window_start, today)
    if len(recent) < math.ceil(MIN_RECENT_SHARE * window_days):
        return None
    baseline_span = _values_between(
        values, window_start - BASELINE_DAYS * DAY_SECONDS, window_start
    )
    if len(baseline_span) < MIN_BASELINE_DAYS:
        return None
    baseline = baseline_span if window_days > 1 else _same_weekday(values, window_start)
    if len(baseline) < (MIN_SAME_WEEKDAYS if window_days == 1 else MIN_BASELINE_DAYS):
        return None
    return level_ratio(before=_mean(baseline), after=_mean(recent), kind=kind)


def level_ratio(*, before: float, after: float, kind: SignalKind) -> float | None:
    """``after / before`` on the kind's scale; None when undefined (no level before)."""
    if kind is SignalKind.SCORE:
        before, after = 1.0 + before, 1.0 + after
    if before <= 0.0:
        return None
    return after / before


def _values_between(values: Mapping[int, float], start: int, end: int) -> list[float]:
    return [values[day] for day in range(start, end, DAY_SECONDS) if day in values]


def _same_weekday(values: Mapping[int, float], day: int) -> list[float]:
    weeks_back = (day - week * 7 * DAY_SECONDS for week in range(1, BASELINE_DAYS // 7 + 1))
    return [values[d] for d in weeks_back if d in values]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
