"""Change ratios on small series whose expected values are worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from monitor.analysis.trends import DAY_SECONDS, DailyPoint, SignalKind, change_ratio

MONDAY = 1_704_067_200  # 2024-01-01 00:00 UTC


def daily(
    values: Sequence[float | None], coverage: Sequence[float] | None = None, start: int = MONDAY
) -> list[DailyPoint]:
    cover = coverage if coverage is not None else [1.0] * len(values)
    return [
        DailyPoint(day=start + i * DAY_SECONDS, value=v, coverage=c)
        for i, (v, c) in enumerate(zip(values, cover, strict=True))
    ]


def day(index: int) -> int:
    return MONDAY + index * DAY_SECONDS


def test_seven_day_ratio_is_recent_sum_over_baseline_scaled_to_seven_days() -> None:
    # Baseline: 14 days of 10 and 14 of 20 -> 15/day -> 105 per 7 days.
    # Recent: 12+9+15+6+9+12+12 = 75 -> 75/105 = 5/7.
    series = daily([10] * 14 + [20] * 14 + [12, 9, 15, 6, 9, 12, 12])
    assert change_ratio(series=series, window_days=7, today=day(35)) == pytest.approx(5 / 7)


def test_days_outside_the_window_and_baseline_are_ignored() -> None:
    # Day 0 (1000) is 36 days before today: outside the 7 + 28 days looked at.
    series = daily([1000] + [10] * 28 + [5] * 7)
    assert change_ratio(series=series, window_days=7, today=day(36)) == pytest.approx(1 / 2)


def test_low_coverage_baseline_days_are_left_out_not_averaged_in() -> None:
    # 7 of 28 baseline days hold 1000 at 50% coverage; the other 21 hold 10.
    # Left out: baseline 10/day, recent 5/day -> 1/2 (averaged in it would be ~0.02).
    values = [1000.0] * 7 + [10.0] * 21 + [5.0] * 7
    coverage = [0.5] * 7 + [1.0] * 28
    series = daily(values, coverage)
    assert change_ratio(series=series, window_days=7, today=day(35)) == pytest.approx(1 / 2)


def test_absent_when_fewer_than_21_baseline_days_count() -> None:
    values = [1000.0] * 8 + [10.0] * 20 + [5.0] * 7
    coverage = [0.5] * 8 + [1.0] * 27
    assert change_ratio(series=daily(values, coverage), window_days=7, today=day(35)) is None


def test_coverage_at_90_percent_counts_and_below_does_not() -> None:
    values = [None] * 7 + [10.0] * 21 + [5.0] * 7
    at_limit = [1.0] * 7 + [0.9] * 21 + [1.0] * 7
    below = [1.0] * 7 + [0.9] * 20 + [0.89] + [1.0] * 7
    assert change_ratio(
        series=daily(values, at_limit), window_days=7, today=day(35)
    ) == pytest.approx(1 / 2)
    assert change_ratio(series=daily(values, below), window_days=7, today=day(35)) is None


def test_absent_for_a_community_watched_for_under_21_days_of_baseline() -> None:
    series = daily([10.0] * 20 + [5.0] * 7, start=day(8))
    assert change_ratio(series=series, window_days=7, today=day(35)) is None


def test_outage_in_the_recent_window_withholds_the_ratio() -> None:
    baseline = [10.0] * 28
    low_day = daily(baseline + [10.0] * 6 + [0.0], [1.0] * 34 + [0.3])
    missing_day = daily(baseline + [10.0] * 6 + [None])
    assert change_ratio(series=low_day, window_days=7, today=day(35)) is None
    assert change_ratio(series=missing_day, window_days=7, today=day(35)) is None


def test_one_day_ratio_uses_the_same_weekday_of_the_four_weeks_before() -> None:
    # Recent day 28 is a Monday; Mondays 0, 7, 14, 21 hold 14, 12, 10, 8 -> mean 11,
    # every other baseline day holds 100. Ratio 22/11 = 2.
    values = [100.0] * 29
    for index, value in zip((0, 7, 14, 21), (14.0, 12.0, 10.0, 8.0), strict=True):
        values[index] = value
    values[28] = 22.0
    assert change_ratio(series=daily(values), window_days=1, today=day(29)) == pytest.approx(2)


def test_one_day_ratio_needs_three_of_the_four_same_weekdays() -> None:
    values = [100.0] * 29
    for index, value in zip((0, 7, 14, 21), (14.0, 12.0, 10.0, 8.0), strict=True):
        values[index] = value
    values[28] = 22.0
    # Monday 0 unusable: (12 + 10 + 8) / 3 = 10 -> 22/10 = 11/5.
    one_lost = [0.0] + [1.0] * 28
    assert change_ratio(
        series=daily(values, one_lost), window_days=1, today=day(29)
    ) == pytest.approx(11 / 5)
    two_lost = [0.0] * 1 + [1.0] * 6 + [0.0] + [1.0] * 21
    assert change_ratio(series=daily(values, two_lost), window_days=1, today=day(29)) is None


def test_score_ratio_is_taken_on_the_one_plus_score_scale() -> None:
    # Baseline alternates 0.1 and 0.3 -> mean 0.2; recent sums to -1.4 -> mean -0.2.
    # (1 - 0.2) / (1 + 0.2) = 0.8 / 1.2 = 2/3.
    recent = [-0.1, -0.3, -0.2, -0.2, -0.1, -0.3, -0.2]
    series = daily([0.1, 0.3] * 14 + recent)
    ratio = change_ratio(series=series, window_days=7, today=day(35), kind=SignalKind.SCORE)
    assert ratio == pytest.approx(2 / 3)


def test_absent_when_the_baseline_level_is_zero() -> None:
    series = daily([0.0] * 28 + [3.0] * 7)
    assert change_ratio(series=series, window_days=7, today=day(35)) is None


def test_today_must_be_a_utc_midnight() -> None:
    with pytest.raises(ValueError, match="midnight"):
        change_ratio(series=daily([1.0] * 35), window_days=7, today=day(35) + 3600)
