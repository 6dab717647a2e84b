"""What the change-point and decline detectors share about a daily series.

The weekday of each day (the weekly rhythm is estimated per weekday), and the
variance-stabilized scale: counts go through the Anscombe square root
``2 * sqrt(x + 3/8)``, on which Poisson noise has unit variance at any level;
scores (sentiment) stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from monitor.analysis.trends import DAY_SECONDS, SignalKind

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MIN_WEEKDAY_SAMPLES = 3
"""Days each weekday needs before a weekly rhythm is estimated."""
MAD_TO_SIGMA = 1.4826
"""Median absolute deviation -> standard deviation, for normal noise."""


def weekdays(days: Sequence[int]) -> IntArray:
    """Weekday index (0..6, a fixed but arbitrary origin) of each UTC midnight."""
    return (np.array(days, dtype=np.int64) // DAY_SECONDS) % 7


def stabilized(values: FloatArray, kind: SignalKind) -> FloatArray:
    """Counts on the Anscombe square-root scale; scores unchanged."""
    if kind is SignalKind.SCORE:
        return values
    result: FloatArray = 2.0 * np.sqrt(np.maximum(values, 0.0) + 0.375)
    return result
