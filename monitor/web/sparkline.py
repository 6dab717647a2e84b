"""Small inline SVG charts of a daily series: a line, gaps where coverage is low, markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 320, 72
PAD_TOP, PAD_BOTTOM = 4, 4
GOOD_COVERAGE = 0.9
"""Days covered less than this are drawn as a gap, as the trends leave them out."""


@dataclass(frozen=True)
class Marker:
    day: int
    """UTC midnight of the marked day."""
    label: str
    kind: str = "event"
    """CSS class suffix: ``event`` or ``changepoint``."""


def sparkline(
    *,
    days: Sequence[int],
    values: Sequence[float | None],
    coverage: Sequence[float],
    title: str,
    markers: Sequence[Marker] = (),
    floor_zero: bool = True,
) -> str:
    """An ``<svg>`` element drawing ``values`` (one per day, oldest first)."""
    count = len(days)
    known = [
        v for v, c in zip(values, coverage, strict=True) if v is not None and c >= GOOD_COVERAGE
    ]
    low = min([*known, 0.0]) if floor_zero else min(known, default=0.0)
    high = max(known, default=1.0)
    if high - low < 1e-9:
        high = low + 1.0
    step = WIDTH / max(1, count - 1)

    def x(index: int) -> float:
        return index * step

    def y(value: float) -> float:
        span = HEIGHT - PAD_TOP - PAD_BOTTOM
        return PAD_TOP + span * (1.0 - (value - low) / (high - low))

    parts = [
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    # gaps: days the trends do not trust (outage, not yet watched)
    for index, share in enumerate(coverage):
        if share < GOOD_COVERAGE:
            parts.append(
                f'<rect class="gap" x="{x(index) - step / 2:.1f}" y="0" '
                f'width="{step:.1f}" height="{HEIGHT}"/>'
            )
    if low < 0 < high:
        parts.append(f'<line class="zero" x1="0" x2="{WIDTH}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>')
    segment: list[str] = []
    segments: list[list[str]] = []
    for index, (value, share) in enumerate(zip(values, coverage, strict=True)):
        if value is None or share < GOOD_COVERAGE:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{x(index):.1f},{y(value):.1f}")
    if segment:
        segments.append(segment)
    for points in segments:
        if len(points) == 1:
            cx, cy = points[0].split(",")
            parts.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="1.5"/>')
        else:
            parts.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    for marker in markers:
        if not days or not days[0] <= marker.day <= days[-1]:
            continue
        mx = x((marker.day - days[0]) // 86400)
        parts.append(
            f'<line class="marker {marker.kind}" x1="{mx:.1f}" x2="{mx:.1f}" '
            f'y1="0" y2="{HEIGHT}"><title>{escape(marker.label)}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)
