"""Level shifts in a daily signal, and the decline alarm built on them.

``latest_changepoint`` feeds ``forum_changepoint_timestamp_seconds`` (onset of
the latest level shift) and ``forum_changepoint_shift_ratio`` (level after /
level before it). Steps, all on days that count (see ``trends``):

1. Days without a value or under 90% poll coverage are dropped, not zeroed, so
   an outage cannot open a segment; while the last complete day does not count
   (an outage in progress) nothing is reported at all.
2. Counts go through the Anscombe square root, which turns Poisson noise into
   roughly unit variance whatever the level; the weekly rhythm (per-weekday
   medians) is subtracted on that scale, so weekends do not look like shifts;
   the result is divided by a robust noise scale (MAD of day-to-day
   differences), floored at the Poisson scale for counts. One penalty then fits
   every community size.
4. ruptures' KernelCPD with the linear kernel (the l2 cost, a C implementation
   of PELT: well under a millisecond on 120 days) segments the series.

Levels before and after are segment means in the signal's units with the
weekly rhythm divided out (``COUNT``) or subtracted (``SCORE``); the shift ratio
is their ``level_ratio`` (for ``SCORE`` on the ``1 + score`` scale). Penalty
and minimum segment length were chosen with ``python -m bench decline``.

The decline alarm (``decline_alarm``, documented on ``DeclineRule``) is the
condition the Prometheus alert rule uses, written over the exported values only.
By default it reads only the decline score (``cusum.decline_score``); the change
point terms are optional. ``held`` and ``alert_episodes`` model how Prometheus
sees absent values (``last_over_time``) and counts alerts, for the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import ruptures

from monitor.analysis.cusum import DECLINE_SCORE_THRESHOLD
from monitor.analysis.seasonal import (
    MAD_TO_SIGMA,
    MIN_WEEKDAY_SAMPLES,
    FloatArray,
    IntArray,
    stabilized,
    weekdays,
)
from monitor.analysis.trends import (
    DAY_SECONDS,
    MIN_BASELINE_DAYS,
    DailyPoint,
    SignalKind,
    good_values,
    level_ratio,
)

T = TypeVar("T")

PENALTY = 14.0
"""PELT penalty in units of the normalized signal's variance."""
MIN_SEGMENT_DAYS = 2
"""Two days, so a halving is flagged after two or three days at the new level."""


@dataclass(frozen=True)
class ChangePoint:
    onset_day: int
    """UTC midnight (epoch seconds) of the first day at the new level."""
    shift_ratio: float
    """``level_after / level_before`` on the kind's scale; inf from a zero level."""
    level_before: float
    level_after: float


def latest_changepoint(
    *,
    series: Sequence[DailyPoint],
    today: int,
    kind: SignalKind = SignalKind.COUNT,
    penalty: float = PENALTY,
    min_segment_days: int = MIN_SEGMENT_DAYS,
) -> ChangePoint | None:
    """The latest level shift in the complete days before ``today``, or None.

    None as well when fewer than 21 days count or the last complete day does
    not count (coverage too low to tell an outage from a decline).
    """
    values = {d: v for d, v in good_values(series).items() if d < today}
    if today - DAY_SECONDS not in values or len(values) < MIN_BASELINE_DAYS:
        return None
    days = sorted(values)
    weekday = weekdays(days)
    raw = np.array([values[d] for d in days], dtype=np.float64)
    detector = ruptures.KernelCPD(kernel="linear", min_size=min_segment_days)
    ends: list[int] = detector.fit(normalized(values=raw, weekday=weekday, kind=kind)).predict(
        pen=penalty
    )
    if len(ends) < 2:
        return None
    start = ends[-2]
    level = deseasonalized(values=raw, weekday=weekday, kind=kind)
    before = float(level[(ends[-3] if len(ends) > 2 else 0) : start].mean())
    after = float(level[start:].mean())
    ratio = level_ratio(before=before, after=after, kind=kind)
    return ChangePoint(
        onset_day=days[start],
        shift_ratio=math.inf if ratio is None else ratio,
        level_before=before,
        level_after=after,
    )


def weekday_medians(*, values: FloatArray, weekday: IntArray) -> FloatArray | None:
    """Median per weekday (0..6), or None with too few days to estimate the rhythm."""
    if np.bincount(weekday, minlength=7).min() < MIN_WEEKDAY_SAMPLES:
        return None
    # Medians, so the few days after a fresh shift barely move the weekday profile.
    return np.array([np.median(values[weekday == w]) for w in range(7)], dtype=np.float64)


def deseasonalized(*, values: FloatArray, weekday: IntArray, kind: SignalKind) -> FloatArray:
    """Daily levels in the signal's units with the weekly rhythm divided (or taken) out."""
    medians = weekday_medians(values=values, weekday=weekday)
    if medians is None or (kind is SignalKind.COUNT and medians.min() <= 0.0):
        return values
    result: FloatArray
    if kind is SignalKind.SCORE:
        result = values - (medians - medians.mean())[weekday]
    else:
        result = values / (medians / medians.mean())[weekday]
    return result


def normalized(*, values: FloatArray, weekday: IntArray, kind: SignalKind) -> FloatArray:
    """The series on a scale where day-to-day noise has unit variance, rhythm removed.

    The rhythm is subtracted after the square root, not divided out before it:
    dividing would leave quiet weekdays noisier than busy ones.
    """
    scaled = stabilized(values, kind)
    medians = weekday_medians(values=scaled, weekday=weekday)
    if medians is not None:
        scaled = scaled - (medians - medians.mean())[weekday]
    steps = np.diff(scaled)
    # Differences cancel the level, so a shift inflates them on one day only.
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(steps - np.median(steps)))) / math.sqrt(2)
    if sigma == 0.0:
        sigma = float(np.std(steps)) / math.sqrt(2) or 1.0
    if kind is SignalKind.COUNT:
        sigma = max(sigma, 1.0)  # Poisson noise is the least a count of posts can have.
    result: FloatArray = scaled / sigma
    return result


@dataclass(frozen=True)
class DeclineRule:
    """When a signal is in decline, from its exported values; ``decline_alarm`` applies it.

    Terms, any of which fires the alarm; a term whose value is withheld (absent)
    never fires:

    - ``min_decline_score`` (default 1.0): the decline score
      (``cusum.decline_score``, gauge ``forum_decline_score``) is above it;
    - ``max_shift_ratio`` (default off): the latest change point started at most
      ``max_onset_age_days`` ago and its shift ratio is below this;
    - ``max_change_ratio_7d`` (default off): the 7d change ratio is below this.

    The default is the score alone: on ``python -m bench decline`` the change
    point term (0.85, 14 days) added false alarms for no detection the score
    missed. Values are refreshed once a day and are absent while the last day
    is not covered by polls; so that an outage neither ends an alarm nor starts
    one, every term reads the latest value present within ``hold_days``
    (``held``), which is PromQL's ``last_over_time(...[3d])``. The alert rule,
    per community, source and signal, no ``for:`` (the inputs change once a day)::

        last_over_time(forum_decline_score[3d]) > 1

    and with the optional terms::

        or (last_over_time(forum_changepoint_shift_ratio[3d]) < 0.85
              and on (community, source, signal)
            (time() - last_over_time(forum_changepoint_timestamp_seconds[3d])) < 14 * 86400)
        or last_over_time(forum_activity_change_ratio{window="7d"}[3d]) < 0.7

    An alert episode starts on the first day the rule holds after a day it did
    not (``alert_episodes``), as Prometheus opens a new alert.
    """

    min_decline_score: float | None = DECLINE_SCORE_THRESHOLD
    max_shift_ratio: float | None = None
    max_onset_age_days: int = 14
    max_change_ratio_7d: float | None = None
    hold_days: int = 3
    """How long a withheld value is replaced by the last one present (``last_over_time``)."""


DEFAULT_DECLINE_RULE = DeclineRule()


def decline_alarm(
    *,
    changepoint: ChangePoint | None = None,
    change_ratio_7d: float | None = None,
    today: int,
    rule: DeclineRule = DEFAULT_DECLINE_RULE,
    decline_score: float | None = None,
) -> bool:
    """Whether ``rule`` flags a decline on ``today``; withheld (None) values never alarm.

    Pass the values as Prometheus sees them: each the latest present within
    ``rule.hold_days`` (``held``), None when there is none.
    """
    limit_score = rule.min_decline_score
    if limit_score is not None and decline_score is not None and decline_score > limit_score:
        return True
    limit_shift = rule.max_shift_ratio
    if changepoint is not None and limit_shift is not None:
        recent = today - changepoint.onset_day <= rule.max_onset_age_days * DAY_SECONDS
        if recent and changepoint.shift_ratio < limit_shift:
            return True
    limit = rule.max_change_ratio_7d
    return limit is not None and change_ratio_7d is not None and change_ratio_7d < limit


def held(daily: Sequence[T | None], hold_days: int) -> list[T | None]:
    """Day by day, the latest value present within ``hold_days`` days (PromQL last_over_time).

    ``daily[i]`` is the value exported on day i, None while withheld; the result
    on day i is ``daily[j]`` for the largest ``j <= i`` with a value and
    ``i - j <= hold_days``, else None.
    """
    result: list[T | None] = []
    last: T | None = None
    age = hold_days + 1
    for value in daily:
        if value is not None:
            last, age = value, 0
        else:
            age += 1
        result.append(last if age <= hold_days else None)
    return result


def alert_episodes(states: Sequence[bool]) -> int:
    """Alerts opened: days the rule holds after a day it did not (or as the first day)."""
    return sum(on and not before for before, on in zip([False, *states], states, strict=False))
