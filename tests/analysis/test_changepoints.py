"""Level shifts: located steps, no shifts from noise, rhythm or outages, and the alarm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from monitor.analysis.changepoints import (
    ChangePoint,
    DeclineRule,
    alert_episodes,
    decline_alarm,
    decline_onset,
    held,
    latest_changepoint,
)
from monitor.analysis.cusum import DeclineScore
from monitor.analysis.trends import DAY_SECONDS, SignalKind
from tests.analysis.series import daily, day


def poisson(rates: Sequence[float], seed: int) -> list[float]:
    return [float(x) for x in np.random.default_rng(seed).poisson(rates)]


def weekly(weekday_rate: float, weekend_rate: float, days: int) -> list[float]:
    return [weekend_rate if i % 7 >= 5 else weekday_rate for i in range(days)]


def test_clean_step_is_located_with_its_levels() -> None:
    # 40 days at 10 then 10 days at 5: onset day 40, levels 10 -> 5, ratio 5/10.
    found = latest_changepoint(series=daily([10.0] * 40 + [5.0] * 10), today=day(50))
    assert found == ChangePoint(
        onset_day=day(40), shift_ratio=0.5, level_before=10.0, level_after=5.0, drop_day=day(40)
    )


def test_noisy_halving_is_located_within_one_day() -> None:
    counts = poisson([40.0] * 60 + [20.0] * 10, seed=1)
    found = latest_changepoint(series=daily(counts), today=day(70))
    assert found is not None
    assert abs(found.onset_day - day(60)) <= DAY_SECONDS
    assert 0.4 < found.shift_ratio < 0.6


@pytest.mark.parametrize("seed", range(5))
def test_flat_noisy_series_has_no_changepoint(seed: int) -> None:
    counts = poisson([40.0] * 120, seed=seed)
    assert latest_changepoint(series=daily(counts), today=day(120)) is None


@pytest.mark.parametrize("seed", range(5))
def test_weekly_rhythm_is_not_a_changepoint(seed: int) -> None:
    # Weekends at under a third of weekdays: unadjusted, every weekend would be a shift.
    counts = poisson(weekly(50.0, 15.0, 120), seed=seed)
    assert latest_changepoint(series=daily(counts), today=day(120)) is None


def test_low_coverage_outage_in_the_middle_opens_no_segment() -> None:
    counts = poisson([40.0] * 90, seed=3)
    counts[60:62] = [0.0, 0.0]
    outage = [1.0] * 60 + [0.0, 0.0] + [1.0] * 28
    assert latest_changepoint(series=daily(counts, outage), today=day(90)) is None
    # The same zeros trusted as real days are a shift, so the coverage is what saved it.
    assert latest_changepoint(series=daily(counts), today=day(90)) is not None


def test_outage_in_progress_withholds_changepoint_and_alarm() -> None:
    counts = poisson([40.0] * 88, seed=4) + [0.0, 0.0]
    outage = [1.0] * 88 + [0.2, 0.0]
    assert latest_changepoint(series=daily(counts, outage), today=day(90)) is None
    trusted = latest_changepoint(series=daily(counts), today=day(90))
    with_changepoints = DeclineRule(max_shift_ratio=0.85)
    assert decline_alarm(
        changepoint=trusted, change_ratio_7d=None, today=day(90), rule=with_changepoints
    )


def slide(seed: int | None) -> list[float]:
    """90 days at 60 a day, a drop to 40 on day 90, a slide to 15 by day 110, then 15."""
    rates = [60.0] * 90 + [40.0 - 25.0 * i / 20 for i in range(20)] + [15.0] * 5
    return rates if seed is None else poisson(rates, seed)


@pytest.mark.parametrize("seed", [None, *range(10)])
def test_a_slide_after_a_drop_is_dated_by_the_drop(seed: int | None) -> None:
    found = latest_changepoint(series=daily(slide(seed)), today=day(115))
    assert found is not None
    # the latest change point alone lies inside the slide, 10 or more days late
    assert found.onset_day >= day(100)
    assert abs(found.drop_day - day(90)) <= DAY_SECONDS


@pytest.mark.parametrize("seed", range(5))
def test_a_step_down_before_a_long_plateau_is_another_event(seed: int) -> None:
    # 60 a day, 48 from day 60 (40 days), 24 from day 100: the decline began on day 100.
    counts = poisson([60.0] * 60 + [48.0] * 40 + [24.0] * 10, seed=seed)
    found = latest_changepoint(series=daily(counts), today=day(110))
    assert found is not None
    assert abs(found.drop_day - day(100)) <= DAY_SECONDS


def test_a_shift_up_has_no_drop() -> None:
    found = latest_changepoint(series=daily([5.0] * 40 + [10.0] * 10), today=day(50))
    assert found is not None
    assert found.drop_day == found.onset_day == day(40)


def test_needs_21_days_that_count() -> None:
    series = daily([10.0] * 15 + [5.0] * 5)
    assert latest_changepoint(series=series, today=day(20)) is None


def test_days_from_today_on_are_not_looked_at() -> None:
    # Days 40.. are the future for today=day(40): only the flat part is seen.
    series = daily([10.0] * 40 + [5.0] * 10)
    assert latest_changepoint(series=series, today=day(40)) is None


def test_score_shift_ratio_is_on_the_one_plus_score_scale() -> None:
    # 0.2 -> -0.2: (1 - 0.2) / (1 + 0.2) = 2/3.
    found = latest_changepoint(
        series=daily([0.2] * 40 + [-0.2] * 10), today=day(50), kind=SignalKind.SCORE
    )
    assert found is not None
    assert found.onset_day == day(40)
    assert found.shift_ratio == pytest.approx(2 / 3)


def shift(ratio: float, onset_days_ago: int, today: int) -> ChangePoint:
    return ChangePoint(
        onset_day=today - onset_days_ago * DAY_SECONDS,
        shift_ratio=ratio,
        level_before=10.0,
        level_after=10.0 * ratio,
        drop_day=today - onset_days_ago * DAY_SECONDS,
    )


def test_alarm_needs_a_recent_large_enough_drop() -> None:
    today = day(100)
    rule = DeclineRule(max_shift_ratio=0.85, max_onset_age_days=14)
    assert decline_alarm(
        changepoint=shift(0.5, 3, today), change_ratio_7d=None, today=today, rule=rule
    )
    assert not decline_alarm(
        changepoint=shift(0.9, 3, today), change_ratio_7d=None, today=today, rule=rule
    )
    assert not decline_alarm(
        changepoint=shift(0.5, 15, today), change_ratio_7d=None, today=today, rule=rule
    )
    assert not decline_alarm(changepoint=None, change_ratio_7d=None, today=today, rule=rule)


def test_alarm_on_the_seven_day_ratio_only_when_the_rule_has_one() -> None:
    today = day(100)
    with_ratio = DeclineRule(max_change_ratio_7d=0.7)
    without = DeclineRule(max_change_ratio_7d=None)
    assert decline_alarm(changepoint=None, change_ratio_7d=0.6, today=today, rule=with_ratio)
    assert not decline_alarm(changepoint=None, change_ratio_7d=0.8, today=today, rule=with_ratio)
    assert not decline_alarm(changepoint=None, change_ratio_7d=0.6, today=today, rule=without)


def test_default_rule_is_the_decline_score_above_one() -> None:
    today = day(100)
    assert decline_alarm(decline_score=1.01, today=today)
    assert not decline_alarm(decline_score=1.0, today=today)
    assert not decline_alarm(decline_score=None, today=today)
    # The change point term is off by default.
    assert not decline_alarm(changepoint=shift(0.5, 3, today), today=today)


def test_held_values_last_hold_days_like_last_over_time() -> None:
    # Day 0: 2.0; days 1-3 withheld -> still 2.0; day 4 withheld -> 4 days old, gone.
    assert held([2.0, None, None, None, None, 0.5], hold_days=3) == [
        2.0,
        2.0,
        2.0,
        2.0,
        None,
        0.5,
    ]
    assert held([None, 1.0], hold_days=3) == [None, 1.0]


def test_an_outage_inside_an_alarm_is_one_episode() -> None:
    scores = [0.2, 1.5, 1.6, None, None, 1.7, 0.3, None, 1.2]
    states = [decline_alarm(decline_score=s, today=day(0)) for s in held(scores, hold_days=3)]
    assert states == [False, True, True, True, True, True, False, False, True]
    assert alert_episodes(states) == 2
    # Without the hold the outage splits the first alarm in two.
    bare = [decline_alarm(decline_score=s, today=day(0)) for s in scores]
    assert alert_episodes(bare) == 3


TODAY = day(100)
FLAGGED = DeclineScore(score=2.0, onset_day=day(86), searched_from=day(86))
"""A decline whose run of low days starts on the first day the score's search looks at."""
OLDER = ChangePoint(
    onset_day=day(74), shift_ratio=0.5, level_before=10.0, level_after=5.0, drop_day=day(70)
)
"""A step down on day 74 whose drop began on day 70, before the search."""


def test_decline_onset_is_the_drop_of_a_change_point_before_the_search() -> None:
    assert decline_onset(FLAGGED, OLDER, today=TODAY) == day(70)


@pytest.mark.parametrize(
    ("score", "changepoint"),
    [
        (FLAGGED, None),
        (replace(FLAGGED, score=1.0), OLDER),  # not above 1: no decline to date
        (FLAGGED, replace(OLDER, shift_ratio=1.2)),  # a shift up
        (FLAGGED, replace(OLDER, onset_day=day(87))),  # a step inside the decline
        (FLAGGED, replace(OLDER, drop_day=day(86))),  # inside the search: the score's
        (FLAGGED, replace(OLDER, drop_day=TODAY - 75 * DAY_SECONDS)),  # over 74 days old
    ],
)
def test_decline_onset_is_the_scores_otherwise(
    score: DeclineScore, changepoint: ChangePoint | None
) -> None:
    assert decline_onset(score, changepoint, today=TODAY) == day(86)


def test_a_drop_74_days_old_still_dates_the_decline() -> None:
    oldest = replace(OLDER, drop_day=TODAY - 74 * DAY_SECONDS)
    assert decline_onset(FLAGGED, oldest, today=TODAY) == TODAY - 74 * DAY_SECONDS
