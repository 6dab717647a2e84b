"""Decline detection on synthetic daily post counts, run day by day as in service.

Each series is a daily Poisson count around a community size of ``rate``
posts/day with a weekly rhythm (weekends lower). Every size in ``RATES`` runs
every case, ``SERIES_PER_CASE`` series each per seed:

- a sustained 50% drop: flagged within 3 days of onset, onset located within
  +-2 days, in >= 95% of series;
- a sustained 20% drop: flagged within 10 days of onset in >= 80% of series;
- control (no drop), and control with poll outages (partial or zero counts on
  days marked as low coverage): <= 0.05 false alarms per series per 90 days.

Every case runs for each seed in ``SEEDS``; a target is judged on the series of
all seeds together (3 x 100, so a share is known to about +-2.5 points rather
than +-4) and each seed's value is shown beside it. How well any detector can
do depends on the community size: Poisson noise on a day of ``rate`` posts is
``sqrt(rate)``, so a 20% drop is 1.3 noise units a day at 40 posts/day and 2.7
at 160. The targets are checked from ``TARGET_FROM_RATE`` posts/day up; the
smaller sizes are measured the same way and shown as information.

"Flagged within k days" means: on some evaluation at or before
``onset + k`` days, i.e. with at most k days of the lower level in the data,
with the onset that the service exports beside the score (``decline_onset``:
the score's own onset or, once a change point dates the decline, its drop) within
the tolerance on that evaluation: the alert is firing by then and its onset gauge
points at the right day. (An alarm that a pre-onset dip set off a day early
reports an early onset; the case still counts if a later evaluation within the
horizon reports it right. The median onset error of the first alarm is shown.) Each
evaluation day the detector sees only the complete days before it (at most
``WINDOW_DAYS``), exactly as the service calls it, and exports
``decline_score`` with that onset (None = absent). The alarm is what the
Prometheus rule sees: ``decline_alarm`` with the default rule on the latest
value present within the rule's ``hold_days`` (``held``, PromQL
``last_over_time``). A false alarm is an alert episode (``alert_episodes``: a day
the alarm switches on) on a control series, or before onset on a drop series
(shown for information). Runtimes are reported as ratios to ``numpy.mean`` over
the same series, measured in the same run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from monitor.analysis.changepoints import (
    DEFAULT_DECLINE_RULE,
    alert_episodes,
    decline_alarm,
    decline_onset,
    held,
    latest_changepoint,
)
from monitor.analysis.cusum import DeclineScore, decline_score
from monitor.analysis.trends import DAY_SECONDS, DailyPoint, change_ratio

SEED = 20_240_601
SEEDS = (SEED, SEED + 1, SEED + 2)
"""Seeds reported; the thresholds were chosen on other seeds (1, 2, 3)."""
SERIES_PER_CASE = 100
RATES = (10.0, 20.0, 40.0, 80.0, 160.0)
"""Community sizes: mean posts per day over a week."""
TARGET_FROM_RATE = 80.0
"""Smallest size at which the targets are checked (the README's supported size)."""
WEEKLY_PROFILE = np.array([1.1, 1.1, 1.1, 1.1, 1.1, 0.75, 0.75])
"""Relative rate Monday..Sunday (scaled below to average 1)."""
START_DAY = 1_704_067_200
"""2024-01-01, a Monday, UTC midnight."""
WINDOW_DAYS = 120
WARMUP_DAYS = 60
CONTROL_DAYS = 90
PRE_ONSET_DAYS = 30
ONSET_RANGE = (70, 100)
OUTAGES_PER_SERIES = 3


@dataclass(frozen=True)
class Case:
    name: str
    drop: float
    """Relative drop of the rate from onset on; 0 for control series."""
    horizon_days: int = 0
    later_days: tuple[int, ...] = ()
    """Longer horizons whose detected share is shown for information."""
    target_share: float = 0.0
    onset_tolerance_days: int | None = None
    outages: bool = False


CASES = (
    Case("50% drop", drop=0.5, horizon_days=3, target_share=0.95, onset_tolerance_days=2),
    Case("20% drop", drop=0.2, horizon_days=10, target_share=0.80, later_days=(14, 21)),
    Case("control", drop=0.0),
    Case("control + outages", drop=0.0, outages=True),
)
MAX_FALSE_ALARMS_PER_90_DAYS = 0.05


@dataclass(frozen=True)
class SeriesResult:
    delay_days: int | None
    onset_error_days: int | None
    """Of the first alarm after onset."""
    located_delay_days: int | None
    """Days from onset to the first alarm whose reported onset is within the case's
    tolerance (the alert firing and its onset gauge right); the first alarm when the
    case has no tolerance."""
    false_alarms: int
    false_alarm_days: int
    """Evaluation days on which an alarm would be false."""
    last_onset_error_days: int | None = None
    """Of the alarm on the last evaluation (the case's longest horizon after onset), if
    the alarm is on then: an older decline, dated beyond the score's own onset search."""


def simulate(
    *, rng: np.random.Generator, case: Case, rate: float
) -> tuple[list[DailyPoint], int | None]:
    """One synthetic series of ``rate`` posts/day and its onset day index (None for control)."""
    onset = int(rng.integers(*ONSET_RANGE)) if case.drop else None
    length = onset + _span(case) if onset is not None else WARMUP_DAYS + CONTROL_DAYS
    profile = WEEKLY_PROFILE / WEEKLY_PROFILE.mean()
    rates = rate * profile[np.arange(length) % 7]
    if onset is not None:
        rates[onset:] *= 1.0 - case.drop
    counts = rng.poisson(rates).astype(float)
    coverage = np.ones(length)
    if case.outages:
        for start in rng.integers(1, length - 3, size=OUTAGES_PER_SERIES):
            span = slice(start, start + int(rng.integers(1, 4)))
            coverage[span] = rng.uniform(0.0, 0.6)
            counts[span] = np.floor(counts[span] * coverage[span])
    points = [
        DailyPoint(
            day=START_DAY + i * DAY_SECONDS, value=float(counts[i]), coverage=float(coverage[i])
        )
        for i in range(length)
    ]
    return points, onset


def exported(*, points: Sequence[DailyPoint], today_index: int) -> DeclineScore | None:
    """What the service exports on ``today_index``, seeing only complete days before it:
    the score, with the onset of ``forum_decline_onset_timestamp_seconds``."""
    today = START_DAY + today_index * DAY_SECONDS
    window = points[max(0, today_index - WINDOW_DAYS) : today_index]
    found = decline_score(series=window, today=today)
    if found is None:
        return None
    changepoint = latest_changepoint(series=window, today=today)
    return replace(found, onset_day=decline_onset(found, changepoint, today=today))


def run_series(case: Case, index: int, seed: int, rate: float) -> SeriesResult:
    rng = np.random.default_rng([seed, CASES.index(case), index, int(rate)])
    points, onset = simulate(rng=rng, case=case, rate=rate)
    first = WARMUP_DAYS if onset is None else onset - PRE_ONSET_DAYS
    last = len(points) if onset is None else onset + _span(case)
    # A control series never reaches its onset: every alarm on it is false.
    true_onset = last + 1 if onset is None else onset
    rule = DEFAULT_DECLINE_RULE
    # Start hold_days early, so that a value held into the first evaluated day is there.
    days = range(first - rule.hold_days, last + 1)
    seen = held([exported(points=points, today_index=t) for t in days], rule.hold_days)
    seen = seen[rule.hold_days :]
    alarms = [
        decline_alarm(
            decline_score=None if s is None else s.score,
            today=START_DAY + t * DAY_SECONDS,
            rule=rule,
        )
        for t, s in zip(range(first, last + 1), seen, strict=True)
    ]
    delay: int | None = None
    onset_error: int | None = None
    located: int | None = None
    tolerance = case.onset_tolerance_days
    for today_index, alarm, score in zip(range(first, last + 1), alarms, seen, strict=True):
        if not (alarm and today_index > true_onset and score is not None):
            continue
        error = (score.onset_day - START_DAY) // DAY_SECONDS - true_onset
        if delay is None:
            delay, onset_error = today_index - true_onset, error
        if tolerance is None or abs(error) <= tolerance:
            located = today_index - true_onset
            break
    before_onset = alarms[: min(last, true_onset) + 1 - first]
    final = seen[-1]
    last_error = None
    if onset is not None and alarms[-1] and final is not None:
        last_error = (final.onset_day - START_DAY) // DAY_SECONDS - true_onset
    return SeriesResult(
        delay, onset_error, located, alert_episodes(before_onset), len(before_onset), last_error
    )


def run_case(case: Case, seed: int, rate: float, pool: ProcessPoolExecutor) -> list[SeriesResult]:
    n = SERIES_PER_CASE
    return list(pool.map(run_series, [case] * n, range(n), [seed] * n, [rate] * n, chunksize=10))


def false_alarms_per_90_days(results: Sequence[SeriesResult]) -> float:
    days = sum(r.false_alarm_days for r in results)
    return 90.0 * sum(r.false_alarms for r in results) / days


def detected_share(case: Case, results: Sequence[SeriesResult], days: int | None = None) -> float:
    """Share of series flagged (with the onset located) within ``days`` (the horizon)."""
    limit = case.horizon_days if days is None else days

    def hit(result: SeriesResult) -> bool:
        return result.located_delay_days is not None and result.located_delay_days <= limit

    return sum(map(hit, results)) / len(results)


def _span(case: Case) -> int:
    """Days a drop series runs past its onset: its horizon, or the longest later one."""
    return max((case.horizon_days, *case.later_days))


Row = tuple[str, ...]


def case_rows(case: Case, rate: float, by_seed: Sequence[Sequence[SeriesResult]]) -> list[Row]:
    """The case's rows at one size: each target judged on every seed's series together."""
    pooled = [r for results in by_seed for r in results]
    size = f"{rate:g}/d"
    checked = rate >= TARGET_FROM_RATE

    def verdict(ok: bool) -> str:
        if checked:
            return "PASS" if ok else "FAIL"
        return "met" if ok else "missed"

    def per_seed(measure: Callable[[Sequence[SeriesResult]], float], digits: int) -> str:
        return " ".join(f"{measure(results):.{digits}f}" for results in by_seed)

    fa = false_alarms_per_90_days(pooled)
    if not case.drop:
        limit = MAX_FALSE_ALARMS_PER_90_DAYS
        return [
            (
                size,
                case.name,
                "false alarms / series / 90 d",
                f"{fa:.3f}",
                per_seed(false_alarms_per_90_days, 3),
                f"<= {limit}",
                verdict(fa <= limit),
            )
        ]

    def share(results: Sequence[SeriesResult]) -> float:
        return detected_share(case, results)

    located = (
        "" if case.onset_tolerance_days is None else (f", onset +-{case.onset_tolerance_days} d")
    )
    delays = [r.delay_days for r in pooled if r.delay_days is not None]
    errors = [abs(r.onset_error_days) for r in pooled if r.onset_error_days is not None]
    late = [abs(r.last_onset_error_days) for r in pooled if r.last_onset_error_days is not None]
    found = share(pooled)
    return [
        (
            size,
            case.name,
            f"flagged <= {case.horizon_days} d{located}",
            f"{found:.3f}",
            per_seed(share, 2),
            f">= {case.target_share:.2f}",
            verdict(found >= case.target_share),
        ),
        (
            size,
            case.name,
            "median delay / |onset error| (days)",
            f"{_median(delays)} / {_median(errors)}",
            "",
            "",
            "info",
        ),
        *(
            (
                size,
                case.name,
                f"flagged <= {days} d",
                f"{detected_share(case, pooled, days):.3f}",
                "",
                "",
                "info",
            )
            for days in case.later_days
        ),
        (size, case.name, "false alarms before onset / 90 d", f"{fa:.3f}", "", "", "info"),
        (
            size,
            case.name,
            f"{_span(case)} d after onset: |onset error| median / <= 2 d",
            f"{_median(late)} / {sum(e <= 2 for e in late) / max(1, len(late)):.2f}",
            "",
            "",
            "info",
        ),
    ]


def _median(values: Sequence[int]) -> str:
    return f"{float(np.median(values)):.1f}" if values else "-"


def oracle_rows(rate: float, series: int = 2000) -> list[Row]:
    """For context: the case's best fixed window told the true level and rhythm.

    A moving sum over the case's horizon (3 or 10 days) of each day's shortfall
    from its known expected count, on the Anscombe scale, with the lowest alarm
    level that keeps control series within the false-alarm target. It is the
    most powerful test for a drop that has lasted exactly the horizon; what it
    misses is Poisson noise that no detector can see through. The detector has
    to estimate level, rhythm and noise from the series' own past instead.
    """
    rng = np.random.default_rng([SEED, len(CASES), int(rate)])
    profile = WEEKLY_PROFILE / WEEKLY_PROFILE.mean()
    warmup = 30
    expected = rate * profile[np.arange(warmup + CONTROL_DAYS) % 7]

    def window_deficits(drop: float, days: int, window: int) -> npt.NDArray[np.float64]:
        """Per series, the window's deficit z-score at each evaluation from ``warmup`` on."""
        rates = expected[:days] * np.where(np.arange(days) >= warmup, 1.0 - drop, 1.0)
        shortfall = 2 * np.sqrt(expected[:days] + 0.375) - 2 * np.sqrt(
            rng.poisson(rates, size=(series, days)) + 0.375
        )
        sums = np.cumsum(shortfall, axis=1)
        moving = sums[:, window - 1 :] - np.pad(sums, ((0, 0), (1, 0)))[:, : days - window + 1]
        # moving[:, j] covers days j .. j + window - 1; keep evaluations ending on warmup or later
        result: npt.NDArray[np.float64] = moving[:, warmup - window + 1 :] / math.sqrt(window)
        return result

    rows: list[Row] = []
    for case in (c for c in CASES if c.drop):
        window = case.horizon_days
        control = window_deficits(0.0, warmup + CONTROL_DAYS, window)
        dropped = window_deficits(case.drop, warmup + window, window)
        for threshold in np.arange(1.0, 8.0, 0.05):
            on = control > threshold
            episodes = on[:, 0].sum() + (on[:, 1:] & ~on[:, :-1]).sum()
            if episodes / series * 90.0 / control.shape[1] <= MAX_FALSE_ALARMS_PER_90_DAYS:
                break
        found = float((dropped > threshold).any(axis=1).mean())
        rows.append(
            (
                f"{rate:g}/d",
                case.name,
                f"oracle (level known): flagged <= {window} d",
                f"{found:.3f}",
                "",
                f">= {case.target_share:.2f}",
                "info",
            )
        )
    return rows


def runtime_rows(calls: int = 500) -> list[Row]:
    """Per-call cost on a WINDOW_DAYS series, as a multiple of numpy.mean over it."""
    rng = np.random.default_rng(SEED)
    points, _ = simulate(rng=rng, case=Case("timing", drop=0.0), rate=40.0)
    window = points[-WINDOW_DAYS:]
    today = window[-1].day + DAY_SECONDS
    values = np.array([p.value for p in window], dtype=float)
    reference = _per_call(lambda: np.mean(values), calls)
    costs = {
        "decline_score": _per_call(lambda: decline_score(series=window, today=today), calls),
        "latest_changepoint": _per_call(
            lambda: latest_changepoint(series=window, today=today), calls
        ),
        "change_ratio(7d)": _per_call(
            lambda: change_ratio(series=window, window_days=7, today=today), calls
        ),
    }
    return [
        ("", "runtime", f"{name} / numpy.mean", f"{cost / reference:.0f}x", "", "", "info")
        for name, cost in costs.items()
    ]


def _per_call(call: Callable[[], object], calls: int) -> float:
    best = math.inf
    for _ in range(3):  # best of three, so a busy moment on the machine does not count
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, time.perf_counter() - started)
    return best / calls


def print_table(rows: Sequence[Row]) -> None:
    header = ("size", "case", "measure", "all seeds", "per seed", "target", "result")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> bool:
    """Run every case at every size, print the table, return whether the checked targets held."""
    print(
        f"decline detection: {SERIES_PER_CASE} series per case and seed, seeds {list(SEEDS)}, "
        f"sizes {[f'{r:g}' for r in RATES]} posts/day, weekly rhythm "
        f"{WEEKLY_PROFILE.tolist()}, Poisson noise; targets checked from "
        f"{TARGET_FROM_RATE:g} posts/day (PASS/FAIL), smaller sizes shown as met/missed"
    )
    rows: list[Row] = []
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for rate in RATES:
            for case in CASES:
                by_seed = [run_case(case, seed, rate, pool) for seed in SEEDS]
                rows += case_rows(case, rate, by_seed)
            rows += oracle_rows(rate)
    rows += runtime_rows()
    print_table(rows)
    return all(row[-1] != "FAIL" for row in rows)
