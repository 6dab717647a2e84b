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

A shift down also gets the first day of the decline that ends in it
(``ChangePoint.drop_day``, see ``first_drop``), which dates a decline
(``decline_onset``) better than the decline score's own onset once the decline
is more than two weeks old.

The decline alarm (``decline_alarm``, documented on ``DeclineRule``) is the
condition the Prometheus alert rule uses, written over the exported values only.
By default it reads only the decline score (``cusum.decline_score``); the change
point terms are optional. ``held`` and ``alert_episodes`` model how Prometheus
sees absent values (``last_over_time``) and counts alerts, for the benchmark.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import ruptures

from monitor.analysis.cusum import (
    BASELINE_DAYS,
    DECLINE_SCORE_THRESHOLD,
    RECENT_DAYS,
    DeclineScore,
)
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
DROP_REFIT_DAYS = 10
"""Days after a step down that ``first_drop`` refits it on, and the most it moves the step
back: enough days to place a step against day-to-day noise, few enough that a slide
after the drop barely moves it. On the demo's gig-work histories (seeds 1-7, each on
every weekday) ``first_drop`` put the onset of posts within 2 days of the event in 46
of 49, that of participants in 43; the change point alone did in 18 and 21."""
SLIDE_STAGE_MAX_DAYS = RECENT_DAYS
"""28: a level held longer than this between two steps down is a plateau, not a stage of
one slide, so ``first_drop`` does not walk back over the step before it."""
DECLINE_CHANGEPOINT_MAX_AGE_DAYS = RECENT_DAYS + BASELINE_DAYS // 2
"""74: a drop older than this is not what a decline score measures. The score's
baseline (the 92 days before the last 28) would hold more days after the drop than
before it, so a decline it flags is a further one, against the lower level."""


@dataclass(frozen=True)
class ChangePoint:
    onset_day: int
    """UTC midnight (epoch seconds) of the first day at the new level."""
    shift_ratio: float
    """``level_after / level_before`` on the kind's scale; inf from a zero level."""
    level_before: float
    level_after: float
    drop_day: int
    """For a shift down, UTC midnight of the first day of the decline that ends in it
    (``first_drop``); for a shift up, ``onset_day``."""


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
    normal = normalized(values=raw, weekday=weekday, kind=kind)
    detector = ruptures.KernelCPD(kernel="linear", min_size=min_segment_days)
    ends: list[int] = detector.fit(normal).predict(pen=penalty)
    if len(ends) < 2:
        return None
    begin, start = (ends[-3] if len(ends) > 2 else 0), ends[-2]
    level = deseasonalized(values=raw, weekday=weekday, kind=kind)
    before = float(level[begin:start].mean())
    after = float(level[start:].mean())
    shift = level_ratio(before=before, after=after, kind=kind)
    ratio = math.inf if shift is None else shift
    drop = first_drop(normal, ends) if ratio < 1.0 else start
    return ChangePoint(
        onset_day=days[start],
        shift_ratio=ratio,
        level_before=before,
        level_after=after,
        drop_day=days[drop],
    )


def first_drop(normal: FloatArray, ends: Sequence[int]) -> int:
    """Index of the first day of the decline that ends in the last segment.

    ``normal`` is the normalized series, ``ends`` its segmentation (ruptures' segment
    ends, the last step being a step down). Two things put the latest change point
    after that day:

    - A slide cut into pieces (a drop, then members leaving over weeks) has several
      steps down: the walk goes back over each earlier step down whose segment after it
      lasted at most ``SLIDE_STAGE_MAX_DAYS``. A level held longer is a plateau, and a
      step before it may be another event.
    - A change point is the best single step over everything after it, so when the level
      kept sliding after a first drop, that step lands inside the slide. Refitted on the
      days up to ``DROP_REFIT_DAYS`` after it, which the slide barely reaches, it moves
      back towards the drop, repeatedly, but never more than ``DROP_REFIT_DAYS`` in all
      (further back, a refit on ever fewer days after it would follow noise).

    On a clean step both find the change point's own day.
    """
    bounds = [0, *ends]
    means = [float(normal[a:b].mean()) for a, b in itertools.pairwise(bounds)]
    step = len(means) - 1  # the step at bounds[step], between segments step - 1 and step
    while (
        step > 1
        and means[step - 2] > means[step - 1]
        and bounds[step] - bounds[step - 1] <= SLIDE_STAGE_MAX_DAYS
    ):
        step -= 1
    begin, found = bounds[step - 1], bounds[step]
    start = found
    while True:
        refit = _best_step_down(normal[begin : min(len(normal), start + DROP_REFIT_DAYS)])
        if refit is None or begin + refit >= start or found - (begin + refit) > DROP_REFIT_DAYS:
            return start
        start = begin + refit


def _best_step_down(values: FloatArray) -> int | None:
    """Where one step down fits ``values`` best (the l2 cost the segmentation uses): the
    index of the first day after it, or None if no split lowers the level."""
    n = len(values)
    splits = np.arange(MIN_SEGMENT_DAYS, n - MIN_SEGMENT_DAYS + 1)
    if len(splits) == 0:
        return None
    sums = np.cumsum(values)
    before = sums[splits - 1] / splits
    after = (sums[-1] - sums[splits - 1]) / (n - splits)
    gain = np.where(before > after, splits * (n - splits) / n * (before - after) ** 2, 0.0)
    best = int(np.argmax(gain))
    return int(splits[best]) if gain[best] > 0.0 else None


def decline_onset(score: DeclineScore, changepoint: ChangePoint | None, *, today: int) -> int:
    """The day a decline began, for ``forum_decline_onset_timestamp_seconds`` and the
    "in decline since" of the status page and API.

    The score's own onset (``DeclineScore.onset_day``) is searched over the last 14
    counting days only, so a decline that began earlier is dated too late: the demo's,
    30 days after its event, was dated 16 days late. So when the score flags a decline
    (above ``DECLINE_SCORE_THRESHOLD``) and the signal's latest change point plausibly
    started it before that search begins, the change point's ``drop_day`` is the onset:

    - it is a shift down (ratio below 1),
    - it starts at or before the score's onset (the score's run of low days lies in it),
    - its drop lies before the first day the score's search looks at, which could not
      have found it (a drop inside the search is dated by the score, which places a
      fresh drop better: a change point needs two days at the new level),
    - its drop is at most ``DECLINE_CHANGEPOINT_MAX_AGE_DAYS`` (74) days before ``today``.

    Otherwise the score's onset.
    """
    if changepoint is None or score.score <= DECLINE_SCORE_THRESHOLD:
        return score.onset_day
    plausible = (
        changepoint.shift_ratio < 1.0
        and changepoint.onset_day <= score.onset_day
        and changepoint.drop_day < score.searched_from
        and today - changepoint.drop_day <= DECLINE_CHANGEPOINT_MAX_AGE_DAYS * DAY_SECONDS
    )
    return changepoint.drop_day if plausible else score.onset_day


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
