"""The shared day chart, on five days worked out by hand.

Days 2024-06-03 (a Monday) to 2024-06-07; posts 2, 4, (outage), 6, 8; the outage day's
stored count is 0, which must not be drawn. Size 200 x 107, font 10:

- y axis: known values 2..8 from zero: step nice_step(8, 4) = 2, ticks 0, 2, 4, 6, 8;
  widest label "8" is 1 x 10 x 0.6 = 6 wide, so the plot starts at left = 8 + 6 = 14 and
  ends at 200 - 8 = 192: 178 wide, 35.6 a day; day i is centred at 14 + (i + 0.5) x 35.6
  = 31.8, 67.4, 103.0, 138.6, 174.2.
- one row of labels (the unit's): top = 15 + 8 = 23; bottom = 107 - 10 - 10 = 87, so
  y(v) = 87 - 64 v / 8 = 87 - 8 v: 71, 55, 39, 23.
- date ticks: "2024-01-01" at font 9 is 54 wide, room for 178 // 62 = 2 labels; five days
  do not fit every day or every other day, so Mondays: 2024-06-03 only, at x 31.8.
"""

from __future__ import annotations

import re

from monitor.web.charts import ChartSize, Marker, day_chart, x_tick_days

MONDAY = 1717372800  # 2024-06-03T00:00:00Z
DAY = 86400
DAYS = [MONDAY + n * DAY for n in range(5)]
SIZE = ChartSize(width=200, height=107, font=10)


def chart(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "days": DAYS,
        "values": [2.0, 4.0, 0.0, 6.0, 8.0],
        "coverage": [1.0, 1.0, 0.0, 1.0, 0.95],
        "title": "Posts per day",
        "unit": "posts/day",
        "size": SIZE,
        **overrides,
    }
    return day_chart(**arguments)  # type: ignore[arg-type]


def test_the_line_breaks_at_the_gap_and_is_never_drawn_through_zero() -> None:
    svg = chart()
    assert re.findall(r'<polyline class="line" points="([^"]+)"', svg) == [
        "31.8,71.0 67.4,55.0",
        "138.6,39.0 174.2,23.0",
    ]
    assert "103.0,87.0" not in svg  # the outage day's stored 0
    gap = re.search(r'<rect class="gap" data-gap="([^"]+)" x="([^"]+)" y="23" width="([^"]+)"', svg)
    assert gap is not None
    assert gap.groups() == ("2024-06-05/2024-06-05", "85.2", "35.6")


def test_axes_carry_dates_values_and_the_unit() -> None:
    svg = chart()
    assert re.findall(r'class="x-tick" x="([^"]+)"[^>]*>([^<]+)<', svg) == [("31.8", "2024-06-03")]
    assert re.findall(r'class="y-tick"[^>]*>([^<]+)<', svg) == ["0", "2", "4", "6", "8"]
    assert '<text class="unit" x="0" y="12" fill="#5b6678">posts/day</text>' in svg
    assert 'aria-label="Posts per day, 2024-06-03 to 2024-06-07"' in svg


def test_a_lone_day_between_gaps_is_a_dot() -> None:
    svg = chart(coverage=[1.0, 0.5, 1.0, 0.0, 1.0], values=[2.0, 4.0, 0.0, 6.0, 8.0])
    assert "<polyline" not in svg
    dots = re.findall(r'<circle class="dot" cx="([^"]+)" cy="([^"]+)"', svg)
    assert dots == [("31.8", "71.0"), ("103.0", "87.0"), ("174.2", "23.0")]
    assert re.findall(r'data-gap="([^"]+)"', svg) == [
        "2024-06-04/2024-06-04",
        "2024-06-06/2024-06-06",
    ]


def test_marker_label_is_written_on_the_chart_not_only_in_a_tooltip() -> None:
    svg = chart(markers=[Marker(MONDAY + 4 * DAY, "shift: 50%", "changepoint")])
    found = re.search(
        r'<g class="marker changepoint" data-day="2024-06-07"><line x1="174.2" x2="174.2"'
        r'[^>]*/><text x="171.2" y="12" text-anchor="end"[^>]*>shift: 50%</text>',
        svg,
    )
    assert found, svg
    outside = chart(markers=[Marker(MONDAY + 9 * DAY, "later", "changepoint")])
    assert "later" not in outside  # a marker outside the days is not drawn


def test_overlapping_labels_go_to_separate_rows() -> None:
    svg = chart(
        markers=[
            Marker(MONDAY + 4 * DAY, "first", "event"),
            Marker(MONDAY + 4 * DAY, "second", "changepoint"),
        ]
    )
    rows = re.findall(r'<text x="[^"]+" y="(\d+)" text-anchor', svg)
    assert rows == ["12", "27"]
    # two rows of labels: top = 2 x 15 + 8 = 38, so the plot is 87 - 38 = 49 high
    assert re.search(r'<rect class="gap"[^>]* y="38" width="35.6" height="49"', svg)


def test_untrusted_text_is_escaped() -> None:
    svg = chart(
        title='<script>alert("t")</script>',
        unit="<b>u</b>",
        markers=[Marker(MONDAY, '"><script>alert(1)</script>', 'changepoint"><x')],
    )
    assert "<script" not in svg and "<b>" not in svg and "<x" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert 'class="marker changepoint&quot;&gt;&lt;x"' in svg


def test_date_ticks_by_length() -> None:
    week = DAYS + [MONDAY + n * DAY for n in range(5, 7)]
    assert x_tick_days(week, room=7) == week
    # every other day on even day numbers (2024-06-03 is day 19877), so every chart of a
    # page ticks the same days
    assert x_tick_days(week, room=4) == [MONDAY + DAY, MONDAY + 3 * DAY, MONDAY + 5 * DAY]
    ninety = [MONDAY + n * DAY for n in range(90)]
    # 90 days are 12.9 weeks: every 4 weeks fits 4 labels; Mondays on a 4-week grid from
    # 1970-01-05, of which 2024-06-10 is one
    assert x_tick_days(ninety, room=4) == [MONDAY + (7 + 28 * n) * DAY for n in range(3)]
