"""Coverage: which stretches of time the store has complete data for.

A successful poll makes its data complete from ``covered_from`` to when it
finished: for a poll that paged all the way back to its cursor that is the
previous success (or ``history_days`` back on a first poll), so a poll after an
outage covers the outage retroactively once it has fetched what was missed.
Time since the last success, and gaps a bounded poll could not reach back
over, stay uncovered. A backfill covers from as far back as its walk reached
to when it began. Trends are withheld while coverage is low, so an outage
never reads as a decline.

The spans are kept merged in ``coverage_spans``: each successful poll or
backfill adds its span in its own transaction (``add_span``), joining the
stored spans it overlaps or touches, so reading a community's coverage reads a
few rows however long its poll history is. The merged table is always what
``merge_spans`` of every span ever added would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlmodel import Session, col

from monitor.store.changes import lock_community
from monitor.store.models import CoverageSpan

BACKFILL_OUTCOME = "backfill"
"""A ``forum-monitor backfill`` run: like a poll, its data is complete over its span."""
SUCCESS = ("ok", "not_modified", BACKFILL_OUTCOME)
GRACE_INTERVALS = 1.5
"""Time since the last success shorter than this many poll intervals is not a gap yet."""
Span = tuple[int, int]


def covered_spans(session: Session, *, community_id: str, since: int) -> list[Span]:
    """Merged, sorted spans of complete data that end at or after ``since`` (whole: a
    span that began before ``since`` is returned from its start)."""
    rows = session.execute(
        select(col(CoverageSpan.covered_from), col(CoverageSpan.covered_until))
        .where(
            col(CoverageSpan.community_id) == community_id,
            col(CoverageSpan.covered_until) >= since,
        )
        .order_by(col(CoverageSpan.covered_from))
    ).all()
    return [(int(start), int(end)) for start, end in rows]


@dataclass(frozen=True)
class SpanChange:
    """What adding one span did to a community's stored spans."""

    span: Span
    """The stored span that now holds the added one."""
    replaced: tuple[Span, ...]
    """The stored spans it overlapped or touched, now part of ``span``."""
    latest: bool
    """Whether ``span`` is the community's newest span."""

    @property
    def changed(self) -> bool:
        return self.replaced != (self.span,)

    def moves_analysis(self, *, now: int, grace_seconds: float) -> bool:
        """Whether coverage as analysis sees it at ``now`` changed.

        Not when the span only carried the newest span's end on to ``now`` from
        within the grace interval: analysis already counted that time as covered
        (``monitor.analysis.snapshot.community_spans``).
        """
        if not self.changed:
            return False
        if self.latest and len(self.replaced) == 1:
            start, end = self.replaced[0]
            if self.span == (start, now) and now - end <= grace_seconds:
                return False
        return True


def add_span(session: Session, *, community_id: str, start: int, end: int) -> SpanChange | None:
    """Add [start, end] to the community's merged spans; None for an empty span.

    Concurrent writers of one community take turns (``lock_community``), so the
    spans stay merged when a backfill runs beside ``serve``.
    """
    if end <= start:
        return None  # as in merge_spans: an empty or inverted span adds nothing
    lock_community(session, community_id=community_id)
    met = session.execute(
        select(col(CoverageSpan.covered_from), col(CoverageSpan.covered_until))
        .where(
            col(CoverageSpan.community_id) == community_id,
            col(CoverageSpan.covered_until) >= start,
            col(CoverageSpan.covered_from) <= end,
        )
        .order_by(col(CoverageSpan.covered_from))
    ).all()
    replaced = tuple((int(a), int(b)) for a, b in met)
    span = (min([start, *(a for a, _ in replaced)]), max([end, *(b for _, b in replaced)]))
    if replaced != (span,):
        if replaced:
            session.execute(
                delete(CoverageSpan).where(
                    col(CoverageSpan.community_id) == community_id,
                    col(CoverageSpan.covered_from).in_([a for a, _ in replaced]),
                )
            )
        session.execute(
            insert(CoverageSpan).values(
                community_id=community_id, covered_from=span[0], covered_until=span[1]
            )
        )
    later = session.execute(
        select(col(CoverageSpan.covered_from))
        .where(
            col(CoverageSpan.community_id) == community_id,
            col(CoverageSpan.covered_from) > span[1],
        )
        .limit(1)
    ).first()
    return SpanChange(span=span, replaced=replaced, latest=later is None)


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
