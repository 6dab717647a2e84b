"""Inline SVG charts of a daily series, shared by the status page and the evidence report.

A chart is one ``<svg>`` with its own fonts and colours as attributes, so it reads the
same inside a page's stylesheet, in a self-contained report and on paper:

- the x axis is dated (``YYYY-MM-DD`` ticks on Mondays, or every day or two for short
  series); the y axis has round ticks and the chart says its unit in its top band;
- days that successful polls covered less than ``GOOD_COVERAGE`` of are a *gap*: shaded,
  labelled "no data" where there is room, and the line stops at them and starts again
  after them. A gap is never drawn as zero;
- markers (an event, a change point) are dashed vertical lines with their label written
  above the plot, so it can be read without hovering and on a phone; labels that would
  overlap go to another row of the band.

The viewBox is the size the chart is laid out for (``ChartSize``): text keeps its
proportions when the page scales the chart to its column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from monitor.analysis.trends import DAY_SECONDS, GOOD_COVERAGE

MONDAY_OFFSET = 4
"""1970-01-01 was a Thursday: day numbers with ``n % 7 == 4`` are Mondays."""
LABEL_ROW = 15
"""Height of one row of marker labels, in viewBox units."""
MAX_LABEL_ROWS = 4
CHAR_WIDTH = 0.6
"""A character's mean width as a share of the font size (a safe bound for digits)."""

COLOURS = {
    "line": "#2f5fb3",
    "axis": "#5b6678",
    "grid": "#e3e6eb",
    "gap": "#dfe2e7",
    "gap_text": "#5b6678",
    "event": "#b3261e",
    "changepoint": "#9a5b00",
    "decline": "#b3261e",
    "text": "#1d2430",
}


@dataclass(frozen=True)
class Marker:
    day: int
    """UTC midnight of the marked day."""
    label: str
    kind: str = "event"
    """``event``, ``changepoint`` or ``decline``: its colour."""


@dataclass(frozen=True)
class ChartSize:
    width: int
    height: int
    font: int = 12


STATUS_SIZE = ChartSize(width=360, height=180)
"""A status page chart: legible at a phone's width (about 330 px of column)."""
REPORT_SIZE = ChartSize(width=720, height=230)
"""A report chart: a printed page's width."""


def iso_day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def plain_number(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def nice_step(span: float, ticks: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` intervals."""
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def y_scale(known: Sequence[float], *, floor_zero: bool) -> tuple[float, float, float]:
    """(low, high, step) of the y axis: round ticks enclosing ``known``."""
    low = min([*known, 0.0]) if floor_zero else min(known, default=0.0)
    high = max(known, default=1.0)
    if high - low < 1e-9:
        low, high = (low - 1.0, high + 1.0) if not floor_zero or low < 0 else (low, high + 1.0)
    step = nice_step(high - low, 4)
    if step < 1 and all(v == int(v) for v in known):
        step = 1.0  # counts: no half a post on the axis
    low = math.floor(low / step + 1e-9) * step
    high = math.ceil(high / step - 1e-9) * step
    return low, high, step


def x_tick_days(days: Sequence[int], *, room: int) -> list[int]:
    """Days to label on an axis that has room for ``room`` labels: every day, every other
    day, or Mondays every 1, 2, 4, 8, ... weeks."""
    if not days:
        return []
    count = len(days)
    for every in (1, 2):
        if count <= room * every:
            return [d for d in days if (d // DAY_SECONDS) % every == 0]
    weeks = 1
    while count / (7 * weeks) > room:
        weeks *= 2
    return [
        d
        for d in days
        if (d // DAY_SECONDS) % 7 == MONDAY_OFFSET
        and ((d // DAY_SECONDS - MONDAY_OFFSET) // 7) % weeks == 0
    ]


def gap_runs(days: Sequence[int], coverage: Sequence[float]) -> list[tuple[int, int]]:
    """(first index, last index) of each run of days covered less than ``GOOD_COVERAGE``."""
    runs: list[tuple[int, int]] = []
    for index, share in enumerate(coverage):
        if share >= GOOD_COVERAGE:
            continue
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _text_width(text: str, font: int) -> float:
    return len(text) * font * CHAR_WIDTH


def _place_labels(
    spans: Sequence[tuple[float, float]], *, taken: Sequence[tuple[float, float]]
) -> list[int]:
    """A row for each label span (x0, x1) so that no two in one row overlap; row 0 already
    holds ``taken``. Past ``MAX_LABEL_ROWS`` the last row is shared."""
    rows: list[list[tuple[float, float]]] = [list(taken)]
    placed = []
    for x0, x1 in spans:
        for number, row in enumerate(rows):
            if all(x1 + 4 < a or x0 > b + 4 for a, b in row):
                row.append((x0, x1))
                placed.append(number)
                break
        else:
            if len(rows) < MAX_LABEL_ROWS:
                rows.append([(x0, x1)])
            else:
                rows[-1].append((x0, x1))
            placed.append(len(rows) - 1)
    return placed


def day_chart(
    *,
    days: Sequence[int],
    values: Sequence[float | None],
    coverage: Sequence[float],
    title: str,
    unit: str,
    markers: Sequence[Marker] = (),
    floor_zero: bool = True,
    size: ChartSize = STATUS_SIZE,
    value_format: Callable[[float], str] = plain_number,
    css_class: str = "chart",
) -> str:
    """An ``<svg>`` of ``values`` (one per day of ``days``, UTC midnights, oldest first)."""
    if not (len(days) == len(values) == len(coverage)):
        raise ValueError("days, values and coverage must be as long as each other")
    font = size.font
    known = [
        v for v, c in zip(values, coverage, strict=True) if v is not None and c >= GOOD_COVERAGE
    ]
    low, high, y_step = y_scale(known, floor_zero=floor_zero)
    # no value known, no scale to read: a labelled 0 would pass for a measured zero
    tick_values = (
        [low + n * y_step for n in range(round((high - low) / y_step) + 1)] if known else []
    )
    left = 8 + max((_text_width(value_format(v), font) for v in tick_values), default=0)
    right = 8
    count = max(1, len(days))
    plot_width = size.width - left - right
    step = plot_width / count

    def x(index: float) -> float:
        return left + (index + 0.5) * step

    shown = [m for m in markers if days and days[0] <= m.day <= days[-1]]
    unit_span = (0.0, _text_width(unit, font) + 4)
    label_spans = []
    anchors = []
    for marker in shown:
        mx = x((marker.day - days[0]) // DAY_SECONDS)
        width = _text_width(marker.label, font)
        if mx + 3 + width <= size.width:
            label_spans.append((mx - 1, mx + 3 + width))
            anchors.append("start")
        else:
            label_spans.append((mx - 3 - width, mx + 1))
            anchors.append("end")
    rows = _place_labels(label_spans, taken=[unit_span])
    band = LABEL_ROW * (max(rows, default=0) + 1) + 8
    top, bottom = band, size.height - font - 10
    plot_height = bottom - top

    def y(value: float) -> float:
        return bottom - plot_height * (value - low) / (high - low)

    label = f"{title}, {iso_day(days[0])} to {iso_day(days[-1])}" if days else title
    parts = [
        f'<svg class="{escape(css_class)}" viewBox="0 0 {size.width} {size.height}" '
        f'width="{size.width}" height="{size.height}" role="img" aria-label="{escape(label)}" '
        f'font-family="system-ui, \'DejaVu Sans\', sans-serif" font-size="{font}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<text class="unit" x="0" y="{LABEL_ROW - 3}" fill="{COLOURS["axis"]}">'
        f"{escape(unit)}</text>",
    ]
    for run_start, run_end in gap_runs(days, coverage):
        gx = left + run_start * step
        width = (run_end - run_start + 1) * step
        period = f"{iso_day(days[run_start])}/{iso_day(days[run_end])}"
        parts.append(
            f'<rect class="gap" data-gap="{period}" x="{gx:.1f}" y="{top}" '
            f'width="{width:.1f}" height="{plot_height}" fill="{COLOURS["gap"]}">'
            f"<title>no data: {period} not covered by successful polls</title></rect>"
        )
        if width >= _text_width("no data", font - 1) + 4:
            parts.append(
                f'<text class="gap-label" x="{gx + width / 2:.1f}" y="{top + font + 2}" '
                f'text-anchor="middle" font-size="{font - 1}" fill="{COLOURS["gap_text"]}">'
                "no data</text>"
            )
    for tick in tick_values:
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{size.width - right}" y1="{ty:.1f}" '
            f'y2="{ty:.1f}" stroke="{COLOURS["grid"] if tick else COLOURS["axis"]}" '
            'stroke-width="1"/>'
            f'<text class="y-tick" x="{left - 4:.1f}" y="{ty + font / 3:.1f}" '
            f'text-anchor="end" fill="{COLOURS["axis"]}">{escape(value_format(tick))}</text>'
        )
    parts.append(
        f'<line class="x-axis" x1="{left}" x2="{size.width - right}" y1="{bottom}" '
        f'y2="{bottom}" stroke="{COLOURS["axis"]}" stroke-width="1"/>'
    )
    tick_font = font - 1
    label_width = _text_width("2024-01-01", tick_font)
    room = max(1, int(plot_width // (label_width + 8)))
    for day in x_tick_days(days, room=room):
        tx = x((day - days[0]) // DAY_SECONDS)
        text_x = min(max(tx, label_width / 2), size.width - label_width / 2)
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{bottom}" y2="{bottom + 4}" '
            f'stroke="{COLOURS["axis"]}"/>'
            f'<text class="x-tick" x="{text_x:.1f}" y="{size.height - 4}" text-anchor="middle" '
            f'font-size="{tick_font}" fill="{COLOURS["axis"]}">{iso_day(day)}</text>'
        )
    parts.extend(_line(values, coverage, x=x, y=y))
    for marker, row, anchor in zip(shown, rows, anchors, strict=True):
        mx = x((marker.day - days[0]) // DAY_SECONDS)
        colour = COLOURS.get(marker.kind, COLOURS["event"])
        text_x = mx + 3 if anchor == "start" else mx - 3
        label_y = LABEL_ROW * (row + 1) - 3
        parts.append(
            f'<g class="marker {escape(marker.kind)}" data-day="{iso_day(marker.day)}">'
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{label_y - font + 2}" y2="{bottom}" '
            f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<text x="{text_x:.1f}" y="{label_y}" text-anchor="{anchor}" fill="{colour}" '
            f'font-weight="600">{escape(marker.label)}</text>'
            f"<title>{escape(marker.label)} ({iso_day(marker.day)})</title></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _line(
    values: Sequence[float | None],
    coverage: Sequence[float],
    *,
    x: Callable[[float], float],
    y: Callable[[float], float],
) -> list[str]:
    """The series as polylines broken at every day without a value or under
    ``GOOD_COVERAGE``; a day alone between two breaks is a dot."""
    segments: list[list[tuple[float, float]]] = [[]]
    for index, (value, share) in enumerate(zip(values, coverage, strict=True)):
        if value is None or share < GOOD_COVERAGE:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x(index), y(value)))
    parts = []
    for points in segments:
        if len(points) == 1:
            ((cx, cy),) = points
            parts.append(
                f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{COLOURS["line"]}"/>'
            )
        elif points:
            joined = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline class="line" points="{joined}" fill="none" '
                f'stroke="{COLOURS["line"]}" stroke-width="1.8" stroke-linejoin="round"/>'
            )
    return parts
