"""Decline score on small series whose expected values are worked out by hand."""

from __future__ import annotations

import math

import pytest

from monitor.analysis.cusum import LONG_Z, SHORT_Z, decline_score
from monitor.analysis.trends import SignalKind
from tests.analysis.series import daily, day


def test_score_of_a_flat_series_after_a_known_drop() -> None:
    # Scores stay as they are. Constant baseline 0.2 over 92 days: rhythm 0, level 0.2,
    # sigma 0, which falls back to 1.0.
    # Recent 28 days: 18 at 0.2, then 10 at -0.8: deficits 0 and 1.0.
    # z_10 = 10 / sqrt(10 + 100/92); z_3 = 3 / sqrt(3 + 9/92).
    series = daily([0.2] * 92 + [0.2] * 18 + [-0.8] * 10)
    found = decline_score(series=series, today=day(120), kind=SignalKind.SCORE)
    assert found is not None
    z10 = 10 / math.sqrt(10 + 100 / 92)
    z3 = 3 / math.sqrt(3 + 9 / 92)
    assert found.score == pytest.approx(max(z10 / LONG_Z, z3 / SHORT_Z))
    assert found.onset_day == day(110)


def test_counts_are_compared_on_the_anscombe_scale() -> None:
    # Baseline 92 days of 40.375 - 0.375 = 40 -> 2*sqrt(40.375); recent: 25 days at 40,
    # then 3 days at 19.625 -> 2*sqrt(20). sigma = 1 (Poisson floor; the baseline is flat).
    # Deficit d = 2*sqrt(40.375) - 2*sqrt(20) on the last 3 days, 0 before.
    series = daily([40.0] * 117 + [19.625] * 3)
    found = decline_score(series=series, today=day(120))
    assert found is not None
    d = 2 * math.sqrt(40.375) - 2 * math.sqrt(20.0)
    z10 = 3 * d / math.sqrt(10 + 100 / 92)
    z3 = 3 * d / math.sqrt(3 + 9 / 92)
    assert found.score == pytest.approx(max(z10 / LONG_Z, z3 / SHORT_Z))
    assert found.onset_day == day(117)


def test_weekly_rhythm_is_removed_before_comparing() -> None:
    # Weekdays 50, weekends 15, unchanged: every deficit is 0 -> score 0.
    values = [15.0 if i % 7 >= 5 else 50.0 for i in range(120)]
    found = decline_score(series=daily(values), today=day(120))
    assert found is not None
    assert found.score == pytest.approx(0.0, abs=1e-9)


def test_a_rise_scores_below_zero() -> None:
    found = decline_score(series=daily([40.0] * 110 + [80.0] * 10), today=day(120))
    assert found is not None
    assert found.score < 0.0


def test_outage_in_progress_withholds_the_score() -> None:
    values = [40.0] * 118 + [0.0, 0.0]
    coverage = [1.0] * 118 + [0.3, 0.0]
    assert decline_score(series=daily(values, coverage), today=day(120)) is None


def test_outage_days_are_skipped_not_read_as_zero() -> None:
    # Two zero days under 90% coverage in the recent part, then full days again.
    values = [40.0] * 110 + [0.0, 0.0] + [40.0] * 8
    coverage = [1.0] * 110 + [0.5, 0.5] + [1.0] * 8
    found = decline_score(series=daily(values, coverage), today=day(120))
    assert found is not None
    assert found.score == pytest.approx(0.0, abs=1e-9)


def test_needs_21_baseline_days_that_count() -> None:
    # 48 days: the baseline is the first 20, one short.
    assert decline_score(series=daily([40.0] * 48), today=day(48)) is None
    assert decline_score(series=daily([40.0] * 49), today=day(49)) is not None


def test_today_must_be_a_midnight() -> None:
    with pytest.raises(ValueError):
        decline_score(series=daily([40.0] * 120), today=day(120) + 1)


def test_onset_is_searched_in_the_last_two_weeks_only() -> None:
    # Scores: baseline 92 days at 0 (sigma falls back to 1). Recent 28 days: a dip of
    # -3 for 2 days 20 days ago (days 100, 101), back to 0, then -1 for the last 5 days.
    # Over all 28 days the strongest tail starts at the dip: (6 + 5)^2 / 20 = 6.05 beats
    # 5^2 / 5 = 5.0; searched over the last 14 days only, the tail starts at day 115.
    values = [0.0] * 100 + [-3.0, -3.0] + [0.0] * 13 + [-1.0] * 5
    found = decline_score(series=daily(values), today=day(120), kind=SignalKind.SCORE)
    assert found is not None
    assert found.onset_day == day(115)
    assert found.searched_from == day(106)  # 14 counting days: 106 .. 119


def test_onset_search_counts_only_days_that_count() -> None:
    # Days 110-113 under 90% coverage: the 14 counting days before day 120 are 102-109
    # and 114-119.
    coverage = [1.0] * 110 + [0.5] * 4 + [1.0] * 6
    found = decline_score(series=daily([40.0] * 120, coverage), today=day(120))
    assert found is not None
    assert found.searched_from == day(102)


def test_count_noise_within_two_standard_errors_of_poisson_is_taken_as_poisson() -> None:
    # Baseline alternating 33.5 and 46.5 posts: on the Anscombe scale 2*sqrt(33.875) =
    # 11.640 and 2*sqrt(46.875) = 13.693, deviations about +-1.027, so the noise estimate
    # is about 1.03 * sqrt(92 / 84) = 1.07: above the Poisson 1, but under the bound
    # 1 + 2 / sqrt(2 * 84) = 1.154. It is taken as Poisson (sigma = 1), so a 3-day drop
    # to 20 scores as against a flat baseline at the same level (their Anscombe means
    # differ by 0.3%), not 7% lower as with sigma 1.07.
    values = [33.5 if i % 2 else 46.5 for i in range(117)] + [20.0] * 3
    found = decline_score(series=daily(values), today=day(120))
    flat = decline_score(series=daily([40.0] * 117 + [20.0] * 3), today=day(120))
    assert found is not None and flat is not None
    assert found.score == pytest.approx(flat.score, rel=0.02)
