"""What the status page and the JSON API show for each community, built once per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from monitor.analysis.conditions import Condition, Verdict, out_of_line, verdict
from monitor.analysis.snapshot import CommunitySnapshot
from monitor.config import CommunityBase


@dataclass(frozen=True)
class Annotation:
    """A labelled moment on a community's charts (the demo's event)."""

    community: str
    at: int
    label: str


@dataclass(frozen=True)
class Presentation:
    """How the service presents itself: ``simulated`` marks every page of the demo."""

    simulated: bool = False
    annotations: tuple[Annotation, ...] = field(default_factory=tuple)


Status = Verdict | Literal["not analysed"]
"""A verdict, or for a configured community without a snapshot: "warming up" while its
first analysis is still to come (after a start), "not analysed" when it failed (the
store could not be read) or no analysis runs."""


@dataclass(frozen=True)
class CommunityView:
    community: CommunityBase
    snapshot: CommunitySnapshot | None
    conditions: list[Condition]
    verdict: Status
    annotations: list[Annotation]
    authors_counted_since: int | None = None
    """Every author is counted anew from this time (a new pseudonym key was accepted)."""

    @property
    def id(self) -> str:
        return self.community.id

    @property
    def source(self) -> str:
        return str(getattr(self.community, "source", ""))


def community_view(
    community: CommunityBase,
    snapshot: CommunitySnapshot | None,
    *,
    presentation: Presentation,
    now: int,
    authors_counted_since: int | None = None,
    analysis_pending: bool = False,
) -> CommunityView:
    """What to show of ``community``; without a snapshot it is still listed, as warming up
    while ``analysis_pending``, else as not analysed."""
    annotations = [a for a in presentation.annotations if a.community == community.id]
    if snapshot is None:
        return CommunityView(
            community=community,
            snapshot=None,
            conditions=[],
            verdict="warming up" if analysis_pending else "not analysed",
            annotations=annotations,
            authors_counted_since=authors_counted_since,
        )
    conditions = out_of_line(snapshot, interval=community.interval, now=now)
    return CommunityView(
        community=community,
        snapshot=snapshot,
        conditions=conditions,
        verdict=verdict(snapshot, conditions, interval=community.interval, now=now),
        annotations=annotations,
        authors_counted_since=authors_counted_since,
    )
