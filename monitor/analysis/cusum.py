"""Decline score: how far the last days of a daily signal sit below its baseline.

``decline_score`` feeds two gauges per community, source and signal:

- ``forum_decline_score{signal}``: unitless, >= 1 means "declined": the larger
  of the 10-day and the 3-day z-score (below), each divided by its own alarm
  level (``LONG_Z`` = 3.4 and ``SHORT_Z`` = 4.0). The decline alert is
  ``last_over_time(forum_decline_score[3d]) > 1`` (``DECLINE_SCORE_THRESHOLD``,
  see ``changepoints.DeclineRule``).
- ``forum_decline_onset_timestamp_seconds{signal}``: the first day of the run of
  low days behind it (for the alert text; present whenever the score is). The
  exported day is ``changepoints.decline_onset``: this one, unless a change point
  dates the decline before the first day the onset search below looks at.

A moving-sum relative of the one-sided CUSUM: both add up how far each day falls
short of the expected level, but a sum over a fixed window is smoother, so
noise crosses the alarm level in fewer separate episodes, and a 10-day window
is the most powerful test for "has the level dropped within the last 10 days"
(on the benchmark's 20% drop it beat a CUSUM tuned to that very drop).

Steps, all on days that count (see ``trends``; other days are skipped, never
read as zero):

1. The complete days before ``today`` are split into the *recent* part, the
   last ``RECENT_DAYS`` (28) days, and the *baseline*, the ``BASELINE_DAYS``
   (92) days before them, i.e. the rest of the service's 120-day series. The
   score is withheld (None) while the last complete day does not count (an
   outage in progress) or fewer than 21 baseline days count.
2. Counts go through the Anscombe square root ``2 * sqrt(x + 3/8)``, where
   Poisson noise has unit variance at any level; scores stay as they are.
3. From the baseline alone: the weekly rhythm (weekday means minus their mean,
   when every weekday has at least 3 days), the level ``m`` (mean of the
   baseline with the rhythm taken out) and the noise ``sigma`` (standard
   deviation of those values around ``m``, winsorized at 3 MADs so a viral day
   does not inflate it; for counts exactly 1, the Poisson noise on this scale,
   unless the estimate is more than two standard errors above 1).
4. Each recent day's deficit is ``e = (m + rhythm[weekday] - value) / sigma``,
   in noise units, positive below the usual level.
5. For a window of W days (10 and 3) holding n counting days, with N baseline
   days: ``z_W = sum(e) / sqrt(n + n^2 / N)``, the two-sample z-score of the
   window's mean against the baseline mean (the ``n^2 / N`` term is the
   baseline mean's own uncertainty).
6. ``score = max(z_10 / LONG_Z, z_3 / SHORT_Z)``. The 10-day term catches a
   20% drop within 10 days in communities of 80 posts a day or more (in two
   to three weeks at 40); the 3-day term, at a stricter level, flags a halving
   after two days (see the README's table by community size).

The onset is the start of the tail of the last ``ONSET_LOOKBACK_DAYS`` (14)
counting days with the strongest evidence of a lower level (the ``tau``
maximizing ``max(0, sum_{t >= tau} e)^2 / count``, the likelihood-ratio
estimate of the change day). Everything is a few numpy reductions over at most 120 values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
)

RECENT_DAYS = 28
"""Days kept out of the baseline; a decline older than this moves into it."""
BASELINE_DAYS = 92
"""Days before the recent part that set the expected level, rhythm and noise."""
LONG_WINDOW_DAYS = 10
LONG_Z = 3.4
"""Alarm level of the 10-day z-score: the lowest that keeps false alarms at or under 0.05
per 90 days on every tuning seed of ``python -m bench decline`` (seeds 1-7, 40 posts/day)."""
SHORT_WINDOW_DAYS = 3
SHORT_Z = 4.0
"""Alarm level of the 3-day z-score; stricter, a short window is noisier (on the tuning
seeds it adds 0.005 false alarms per 90 days to the 10-day term's 0.022)."""
ONSET_LOOKBACK_DAYS = 14
"""How far back the onset of a decline is searched (counting days)."""
DECLINE_SCORE_THRESHOLD = 1.0
"""A score above this is a decline: one of the z-scores is above its alarm level."""
_WINSOR_MADS = 3.0


@dataclass(frozen=True)
class DeclineScore:
    score: float
    """``max(z_10d / LONG_Z, z_3d / SHORT_Z)``; above 1 is a decline, negative a rise."""
    onset_day: int
    """UTC midnight of the first day of the run of low days behind ``score``."""
    searched_from: int
    """UTC midnight of the first day the onset search looks at: a decline that began
    before it is dated too late (``changepoints.decline_onset`` then asks the change
    points)."""


def decline_score(
    *,
    series: Sequence[DailyPoint],
    today: int,
    kind: SignalKind = SignalKind.COUNT,
) -> DeclineScore | None:
    """The decline score at the last complete day before ``today``, or None when withheld.

    None when the last complete day does not count (coverage too low to tell an
    outage from a decline) or fewer than 21 days of the baseline count.
    """
    if today % DAY_SECONDS:
        raise ValueError(f"today must be a UTC midnight, got {today}")
    values = good_values(series)
    if today - DAY_SECONDS not in values:
        return None
    split = today - RECENT_DAYS * DAY_SECONDS
    start = split - BASELINE_DAYS * DAY_SECONDS
    base_days = [d for d in range(start, split, DAY_SECONDS) if d in values]
    if len(base_days) < MIN_BASELINE_DAYS:
        return None
    recent_days = [d for d in range(split, today, DAY_SECONDS) if d in values]

    base = stabilized(np.array([values[d] for d in base_days], dtype=np.float64), kind)
    base_weekday = weekdays(base_days)
    rhythm = _rhythm(base, base_weekday)
    flat = base - rhythm[base_weekday]
    level = float(flat.mean())
    sigma = _noise(flat, kind)

    recent = stabilized(np.array([values[d] for d in recent_days], dtype=np.float64), kind)
    deficit = (level + rhythm[weekdays(recent_days)] - recent) / sigma
    recent_index = np.array(recent_days, dtype=np.int64)
    score = max(
        _window_z(deficit, recent_index, today, LONG_WINDOW_DAYS, len(base_days)) / LONG_Z,
        _window_z(deficit, recent_index, today, SHORT_WINDOW_DAYS, len(base_days)) / SHORT_Z,
    )
    return DeclineScore(
        score=score,
        onset_day=recent_days[_onset_index(deficit)],
        searched_from=recent_days[_search_start(len(deficit))],
    )


def _window_z(
    deficit: FloatArray, days: IntArray, today: int, window_days: int, baseline_count: int
) -> float:
    """Two-sample z-score of the deficits in the last ``window_days`` (the last day counts)."""
    part = deficit[days >= today - window_days * DAY_SECONDS]
    n = len(part)
    return float(part.sum()) / math.sqrt(n + n * n / baseline_count)


def _onset_index(deficit: FloatArray) -> int:
    """Start of the tail with the most evidence of a lower level (the latest day if none):
    the likelihood-ratio estimate of the change day, searched over the last
    ``ONSET_LOOKBACK_DAYS`` counting days, since an older dip in the recent part would
    otherwise pull the onset days too early."""
    first = _search_start(len(deficit))
    tails = np.cumsum(deficit[first:][::-1])[::-1]
    counts = np.arange(len(tails), 0, -1)
    evidence = np.maximum(tails, 0.0) ** 2 / counts
    return first + int(np.argmax(evidence)) if evidence.max() > 0.0 else len(deficit) - 1


def _search_start(count: int) -> int:
    """Index of the first of ``count`` recent days that the onset search looks at."""
    return max(0, count - ONSET_LOOKBACK_DAYS)


def _rhythm(values: FloatArray, weekday: IntArray) -> FloatArray:
    """Weekday means minus their mean; zeros while a weekday has under 3 days."""
    counts = np.bincount(weekday, minlength=7)
    if counts.min() < MIN_WEEKDAY_SAMPLES:
        return np.zeros(7, dtype=np.float64)
    means = np.bincount(weekday, weights=values, minlength=7) / counts
    result: FloatArray = means - means.mean()
    return result


def _noise(flat: FloatArray, kind: SignalKind) -> float:
    """Winsorized standard deviation around the level (7 rhythm terms + 1 level fitted)."""
    deviation = flat - np.median(flat)
    mad = MAD_TO_SIGMA * float(np.median(np.abs(deviation)))
    if mad > 0.0:
        deviation = np.clip(deviation, -_WINSOR_MADS * mad, _WINSOR_MADS * mad)
    dof = max(len(deviation) - 8, 1)
    sigma = math.sqrt(float(np.sum((deviation - deviation.mean()) ** 2)) / dof)
    if kind is SignalKind.COUNT:
        # On the square-root scale Poisson noise has unit variance: the least a count of
        # posts can have. An estimate within two standard errors of 1 is Poisson noise
        # plus estimation error, so use the exact 1 rather than a noisy threshold.
        if sigma < 1.0 + 2.0 / math.sqrt(2.0 * dof):
            return 1.0
        return sigma
    return sigma or 1.0
