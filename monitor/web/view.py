"""What the status page and the JSON API show for each community, built once per request."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class CommunityView:
    community: CommunityBase
    snapshot: CommunitySnapshot
    conditions: list[Condition]
    verdict: Verdict
    annotations: list[Annotation]
    authors_counted_since: int | None = None
    """Every author is counted anew from this time (a new pseudonym key was accepted)."""

    @property
    def id(self) -> str:
        return self.snapshot.community


def community_view(
    community: CommunityBase,
    snapshot: CommunitySnapshot,
    *,
    presentation: Presentation,
    now: int,
    authors_counted_since: int | None = None,
) -> CommunityView:
    conditions = out_of_line(snapshot, interval=community.interval, now=now)
    return CommunityView(
        community=community,
        snapshot=snapshot,
        conditions=conditions,
        verdict=verdict(snapshot, conditions, interval=community.interval, now=now),
        annotations=[a for a in presentation.annotations if a.community == community.id],
        authors_counted_since=authors_counted_since,
    )
