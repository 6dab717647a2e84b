"""Decline score: a likelihood-ratio test for a drop in a daily signal's level.

``decline_score`` feeds two gauges per community, source and signal:

- ``forum_decline_score{signal}``: unitless, above 1 means "declined". It is
  the generalized likelihood ratio (GLR) statistic for "the level dropped on
  some day within the last ``LOOKBACK_DAYS`` days and stayed down" against "no
  change", divided by its alarm level ``GLR_THRESHOLD``. The decline alert is::

      last_over_time(forum_decline_score{signal="posts"}[3d]) > 1

  (``DECLINE_SCORE_THRESHOLD``, see ``changepoints.DeclineRule``).
- ``forum_decline_onset_timestamp_seconds{signal}``: the most likely day the
  level changed (the maximum-likelihood change time behind the score; for the
  alert text, present whenever the score is).

The rule in words: for every day ``tau`` of the last ``LOOKBACK_DAYS`` (14),
ask how much likelier the days from ``tau`` on are if the signal's usual level
had been multiplied by some ``r < 1`` from ``tau`` on (``r`` fitted to those
days) than if nothing had changed; the score is the largest of these log
likelihood ratios over ``GLR_THRESHOLD`` (5.8), and the onset is the ``tau``
that gives it. A halving is above the alarm level after two or three days, a
20% drop after about a week. Looking back over a fixed number of days, rather
than adding up a CUSUM, lets the score fall back once a decline has passed
into the baseline, and the fitted change time is also the onset reported.

Steps, all on days that count (see ``trends``; other days are skipped, never
read as zero):

1. The complete days before ``today`` are split into the *recent* part, the
   last ``RECENT_DAYS`` (28) days, and the *baseline*, the ``BASELINE_DAYS``
   (92) days before them, i.e. the rest of the service's 120-day series. The
   score is withheld (None) while the last complete day does not count (an
   outage in progress) or fewer than 21 baseline days count.
2. The usual level of each weekday is its mean over the baseline (the weekly
   rhythm), or the mean of the whole baseline while a weekday has fewer than
   3 baseline days.
3. Counts (``SignalKind.COUNT``) are Poisson, widened by a dispersion ``phi``:
   the variance of the baseline's Pearson residuals ``(x - mu) / sqrt(mu)``
   (winsorized at 3 MADs so a viral day does not inflate it), at least 1.
   For a tail from ``tau`` on with observed sum ``X`` and usual sum ``M``, the
   Poisson log likelihood ratio at the fitted ``r = X / M`` is
   ``X log(X / M) - X + M`` (taken as 0 when ``X >= M``, since only a drop is
   tested), divided by ``phi`` (quasi-Poisson).
4. Scores (``SignalKind.SCORE``, sentiment in [-1, 1]) are normal around the
   weekday levels, with a noise ``sigma`` estimated like ``phi`` (winsorized
   standard deviation of the baseline around them); the tail's log
   likelihood ratio is ``max(0, M - X)^2 / (2 sigma^2 n)`` for ``n`` days.
5. The usual sum ``M`` is itself estimated: for a tail holding ``k_w`` days of
   weekday ``w``, whose level is a mean of ``n_w`` baseline days, its variance
   is ``V = sum_w k_w^2 mu_w / n_w`` (counts) or ``sigma^2 sum_w k_w^2 / n_w``
   (scores). The ratio is scaled by ``Var(X) / (Var(X) + V)``, which is what the
   two-sample test would give in the normal limit (``Var(X)`` is ``M`` for
   counts, ``sigma^2 n`` for scores).
6. ``score = max over tau / GLR_THRESHOLD``. When no tail is below its usual
   level the score is instead minus the same statistic for a rise (``r > 1``),
   so a negative score means the signal is up, and 0 means exactly as usual.

``GLR_THRESHOLD`` and ``LOOKBACK_DAYS`` were chosen with ``python -m bench
decline`` on seeds other than the ones it reports. Everything is a few numpy
cumulative sums over at most 120 values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.analysis.trends import (
    DAY_SECONDS,
    MIN_BASELINE_DAYS,
    DailyPoint,
    SignalKind,
    good_values,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

RECENT_DAYS = 28
"""Days kept out of the baseline; a decline older than this moves into it."""
BASELINE_DAYS = 92
"""Days before the recent part that set the usual level, rhythm and noise."""
LOOKBACK_DAYS = 14
"""Candidate change days: the last this many days (a subset of the recent part)."""
GLR_THRESHOLD = 5.8
"""Alarm level of the log likelihood ratio; chosen with ``python -m bench decline``."""
DECLINE_SCORE_THRESHOLD = 1.0
"""A score above this is a decline: the likelihood ratio is above ``GLR_THRESHOLD``."""
MIN_WEEKDAY_SAMPLES = 3
_MAD_TO_SIGMA = 1.4826
_WINSOR_MADS = 3.0


@dataclass(frozen=True)
class DeclineScore:
    score: float
    """GLR statistic / ``GLR_THRESHOLD``; above 1 is a decline, negative a rise."""
    onset_day: int
    """UTC midnight of the most likely first day at the changed level."""


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
    recent_days, down, up = _tail_statistics(values, base_days, today, kind)
    if down.max() > 0.0:
        best = int(np.argmax(down))
        score = float(down[best]) / GLR_THRESHOLD
    elif up.max() > 0.0:
        best = int(np.argmax(up))
        score = -float(up[best]) / GLR_THRESHOLD
    else:
        best, score = len(recent_days) - 1, 0.0
    return DeclineScore(score=score, onset_day=recent_days[best])


def _tail_statistics(
    values: dict[int, float], base_days: list[int], today: int, kind: SignalKind
) -> tuple[list[int], FloatArray, FloatArray]:
    """Candidate change days and, for each, the scaled log likelihood ratios (drop, rise)."""
    lookback = today - LOOKBACK_DAYS * DAY_SECONDS
    recent_days = [d for d in range(lookback, today, DAY_SECONDS) if d in values]

    base = np.array([values[d] for d in base_days], dtype=np.float64)
    recent = np.array([values[d] for d in recent_days], dtype=np.float64)
    if kind is SignalKind.COUNT:
        base, recent = np.maximum(base, 0.0), np.maximum(recent, 0.0)
    base_group, recent_group = _groups(base_days), _groups(recent_days)
    if np.bincount(base_group, minlength=7).min() < MIN_WEEKDAY_SAMPLES:
        base_group, recent_group = np.zeros_like(base_group), np.zeros_like(recent_group)
    groups = int(base_group.max()) + 1
    sizes = np.bincount(base_group, minlength=groups).astype(np.float64)
    usual = np.bincount(base_group, weights=base, minlength=groups) / sizes

    # Tail sums from each candidate day on: observed, usual, and days per group.
    observed = _tail_sums(recent)
    expected = _tail_sums(usual[recent_group])
    per_group = _tail_sums(np.eye(groups)[recent_group])
    if kind is SignalKind.COUNT:
        phi = _dispersion(base, usual[base_group], groups)
        level_var = per_group**2 @ (usual / sizes)
        down, up = _poisson_llr(observed, expected)
        scale = (
            np.divide(
                expected, expected + level_var, out=np.zeros_like(expected), where=expected > 0.0
            )
            / phi
        )
    else:
        sigma = _noise(base - usual[base_group], groups)
        counts = _tail_sums(np.ones(len(recent)))
        shortfall = expected - observed
        down = np.maximum(shortfall, 0.0) ** 2 / 2.0
        up = np.maximum(-shortfall, 0.0) ** 2 / 2.0
        scale = 1.0 / (sigma**2 * (counts + per_group**2 @ (1.0 / sizes)))
    return recent_days, down * scale, up * scale


def _groups(days: Sequence[int]) -> IntArray:
    """Weekday of each day, 0 = Monday."""
    return (np.array(days, dtype=np.int64) // DAY_SECONDS + 3) % 7


def _tail_sums(values: FloatArray) -> FloatArray:
    """``result[i] = values[i:].sum(axis=0)``."""
    result: FloatArray = np.cumsum(values[::-1], axis=0)[::-1]
    return result


def _poisson_llr(observed: FloatArray, expected: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Poisson log likelihood ratios of the fitted rate ratio against 1: (drops, rises)."""
    ratio = np.divide(observed, expected, out=np.ones_like(observed), where=expected > 0.0)
    # x log(x / m) is 0 at x = 0 (the limit), so a day with no posts is a full drop.
    x_log = np.zeros_like(observed)
    np.multiply(observed, np.log(ratio, out=x_log, where=ratio > 0.0), out=x_log)
    llr = np.maximum(x_log - observed + expected, 0.0)
    llr[expected <= 0.0] = 0.0
    return np.where(ratio < 1.0, llr, 0.0), np.where(ratio > 1.0, llr, 0.0)


def _winsorized(deviation: FloatArray) -> FloatArray:
    """Deviations clipped at 3 MADs around their median (no clipping while the MAD is 0)."""
    centred = deviation - np.median(deviation)
    mad = _MAD_TO_SIGMA * float(np.median(np.abs(centred)))
    if mad > 0.0:
        centred = np.clip(centred, -_WINSOR_MADS * mad, _WINSOR_MADS * mad)
    return centred


def _dispersion(base: FloatArray, usual: FloatArray, groups: int) -> float:
    """Variance of the Pearson residuals around the weekday levels; at least 1 (Poisson)."""
    positive = usual > 0.0
    if positive.sum() <= groups:
        return 1.0
    residual = _winsorized((base[positive] - usual[positive]) / np.sqrt(usual[positive]))
    dof = max(int(positive.sum()) - groups, 1)
    phi = float(np.sum((residual - residual.mean()) ** 2)) / dof
    return max(phi, 1.0)


def _noise(deviation: FloatArray, groups: int) -> float:
    """Winsorized standard deviation around the weekday levels (1.0 when it is 0)."""
    clipped = _winsorized(deviation)
    dof = max(len(clipped) - groups, 1)
    sigma = math.sqrt(float(np.sum((clipped - clipped.mean()) ** 2)) / dof)
    return sigma or 1.0
