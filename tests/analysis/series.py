"""Daily series for the trend, change-point and decline-score tests."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.analysis.trends import DAY_SECONDS, DailyPoint

MONDAY = 1_704_067_200  # 2024-01-01 00:00 UTC


def day(index: int) -> int:
    return MONDAY + index * DAY_SECONDS


def daily(values: Sequence[float], coverage: Sequence[float] | None = None) -> list[DailyPoint]:
    """One point a day from MONDAY on, fully covered unless ``coverage`` says otherwise."""
    cover = coverage if coverage is not None else [1.0] * len(values)
    return [
        DailyPoint(day=day(i), value=float(v), coverage=c)
        for i, (v, c) in enumerate(zip(values, cover, strict=True))
    ]
