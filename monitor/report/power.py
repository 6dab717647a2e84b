"""What the decline detector was measured to find, by community size.

The rows are ``python -m bench decline`` as bench/README.md records it ("Result"),
all three seeds together (300 synthetic series per case and size); a test keeps the two
in step. The report quotes the rows around a community's own posts per day, so a reader
sees what the detector can and cannot be expected to catch at that size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeasuredPower:
    posts_per_day: int
    halving_within_3_days: float
    """Share of 50% drops flagged within 3 days of onset with the onset located ±2 days."""
    fifth_within_10_days: float
    """Share of 20% drops flagged within 10 days of onset."""
    fifth_within_14_days: float
    fifth_within_21_days: float
    false_alarms_per_90_days: float
    """Alert episodes per steady series per 90 days."""
    false_alarms_per_90_days_with_outages: float


MEASURED = (
    MeasuredPower(10, 0.22, 0.08, 0.15, 0.25, 0.033, 0.033),
    MeasuredPower(20, 0.67, 0.30, 0.45, 0.67, 0.020, 0.040),
    MeasuredPower(40, 0.96, 0.71, 0.87, 0.97, 0.013, 0.033),
    MeasuredPower(80, 1.00, 0.99, 1.00, 1.00, 0.020, 0.020),
    MeasuredPower(160, 1.00, 1.00, 1.00, 1.00, 0.016, 0.033),
)
"""bench/README.md, "decline", "Result": one row per simulated size (posts/day)."""


def rows_around(posts_per_day: float) -> list[MeasuredPower]:
    """The measured sizes that bracket ``posts_per_day``: the one at or below and the one at
    or above (one row when it matches a size or lies outside the measured range)."""
    below = [row for row in MEASURED if row.posts_per_day <= posts_per_day]
    above = [row for row in MEASURED if row.posts_per_day >= posts_per_day]
    picked = ([below[-1]] if below else []) + ([above[0]] if above else [])
    return list(dict.fromkeys(picked))
