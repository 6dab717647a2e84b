"""Coverage: which stretches of time the store has complete data for.

A successful poll makes its data complete from ``covered_from`` to when it
finished: for a poll that paged all the way back to its cursor that is the
previous success (or ``history_days`` back on a first poll), so a poll after an
outage covers the outage retroactively once it has fetched what was missed.
Time since the last success, and gaps a bounded poll could not reach back
over, stay uncovered. A backfill covers from as far back as its walk reached
to when it began. Trends are withheld while coverage is low, so an outage
never reads as a decline.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from monitor.store.models import PollRun

BACKFILL_OUTCOME = "backfill"
"""A ``forum-monitor backfill`` run: like a poll, its data is complete over its span."""
SUCCESS = ("ok", "not_modified", BACKFILL_OUTCOME)
Span = tuple[int, int]


def covered_spans(session: Session, *, community_id: str, since: int) -> list[Span]:
    """Merged, sorted spans of complete data that end after ``since``."""
    rows = session.exec(
        select(PollRun.covered_from, PollRun.finished_at).where(
            PollRun.community_id == community_id,
            col(PollRun.outcome).in_(SUCCESS),
            PollRun.finished_at >= since,
            col(PollRun.covered_from).is_not(None),
        )
    ).all()
    return merge_spans([(start, end) for start, end in rows if start is not None])


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def coverage_ratio(spans: Sequence[Span], *, start: int, end: int) -> float:
    """Share of [start, end) inside ``spans`` (merged and sorted)."""
    if end <= start:
        return 0.0
    covered = 0
    for span_start, span_end in spans:
        low, high = max(start, span_start), min(end, span_end)
        if high > low:
            covered += high - low
    return covered / (end - start)
