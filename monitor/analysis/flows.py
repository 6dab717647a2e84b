"""Where participants went: flows between watched communities of one platform namespace.

Authors are linked across communities only by their namespace pseudonym
(``monitor.privacy.namespace_pseudonym``), the same for one account in every community
of one platform namespace (``Source.author_namespace``) and different across namespaces,
so communities of two platforms are never paired: equal names there are not one person.

Per window ``W`` (28 days), ending ``now``, for communities A and B of one namespace:

- *active(A)*: authors whose last post in A is in the last ``W``;
- *departed(A)*: authors whose last post in A is in the ``W`` before that (active then,
  silent since);
- *moved(A, B)*: departed(A) that are active(B);
- *flow ratio(A, B)* = moved(A, B) / departed(A);
- *shared(A, B)*: authors active in both.

All of it is read from each author's ``last_seen`` in the ``authors`` table: one grouped
query per namespace, no scan of posts. Authors last written before namespace pseudonyms
existed have none and are not counted (see the README).

k-anonymity (``flow_min_authors``, k): a count is shown only when at least k distinct
authors are behind it. departed(A) and shared(A, B) below k are left out. A ratio needs
departed(A) >= k; with moved(A, B) >= k it is moved/departed; with fewer than k movers it
is shown as 0 (read: "fewer than k") only when k - 1 movers would be at most
``ZERO_TOLERANCE`` of departed(A), so that 0 is never more than 10 points below the
share, and is left out otherwise (with k = 5: from 40 departed up). No count below k
is ever shown, so no value points at fewer than k people.

At most ``TOP_DESTINATIONS`` destinations per community and window are kept (the ones
with most movers, then most shared authors), which bounds the series per community.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, literal, select, union_all
from sqlmodel import Session

from monitor.store.models import Author

DAY = 86_400
FLOW_WINDOWS = {"28d": 28 * DAY}
"""Window name -> seconds; departed authors were active in the window before it."""
DEFAULT_MIN_AUTHORS = 5
ZERO_TOLERANCE = 0.10
"""A ratio with fewer than k movers is shown as 0 only when k - 1 movers are at most this
share of the departed (so the 0 is at most 10 points off)."""
TOP_DESTINATIONS = 10
"""Destinations kept per community and window: bounds the series at 1,000 communities."""

AUTHORS = cast(Table, Author.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FlowCounts:
    """Raw counts of one namespace and window, before k-anonymity: never shown as such."""

    departed: dict[str, int]
    moved: dict[tuple[str, str], int]
    """(from, to) -> departed(from) active in to."""
    shared: dict[tuple[str, str], int]
    """(a, b) -> active in both; both orders present."""


@dataclass(frozen=True)
class Destination:
    """Where some of a community's departed participants went; None = withheld (below k)."""

    community: str
    ratio: float | None
    """Share of the departed active here in the window; 0.0 may mean "fewer than k"."""
    moved: int | None
    """Departed authors active here, when at least k."""
    shared: int | None
    """Authors active in both communities in the window, when at least k."""


@dataclass(frozen=True)
class CommunityFlows:
    community: str
    window: str
    namespace: str
    departed: int | None
    """Authors active in the previous window and not in this one, when at least k."""
    destinations: tuple[Destination, ...]
    """Best first: most movers, then most shared authors, then by id."""
    min_authors: int


def flow_counts(
    session: Session, *, communities: Sequence[str], now: int, seconds: int
) -> FlowCounts:
    """One grouped query over the authors of ``communities`` (one namespace)."""
    if not communities:
        return FlowCounts({}, {}, {})
    middle, start = now - seconds, now - 2 * seconds
    recent = (
        select(
            AUTHORS.c.community_id.label("community"),
            AUTHORS.c.namespace_pseudonym.label("person"),
            AUTHORS.c.last_seen.label("last_seen"),
        )
        .where(
            AUTHORS.c.community_id.in_(list(communities)),
            AUTHORS.c.namespace_pseudonym.is_not(None),
            AUTHORS.c.last_seen >= start,
        )
        .cte("recent")
    )
    source, target = recent.alias("source"), recent.alias("target")
    departed = select(
        literal("departed").label("kind"),
        recent.c.community.label("a"),
        literal("").label("b"),
        func.count(func.distinct(recent.c.person)).label("n"),
    ).where(recent.c.last_seen < middle)
    departed = departed.group_by(recent.c.community)
    pairs = source.join(
        target,
        (source.c.person == target.c.person) & (source.c.community != target.c.community),
    )
    moved = (
        select(
            literal("moved").label("kind"),
            source.c.community,
            target.c.community,
            func.count(func.distinct(source.c.person)),
        )
        .select_from(pairs)
        .where(source.c.last_seen < middle, target.c.last_seen >= middle)
        .group_by(source.c.community, target.c.community)
    )
    shared = (
        select(
            literal("shared").label("kind"),
            source.c.community,
            target.c.community,
            func.count(func.distinct(source.c.person)),
        )
        .select_from(pairs)
        .where(source.c.last_seen >= middle, target.c.last_seen >= middle)
        .group_by(source.c.community, target.c.community)
    )
    counts = FlowCounts({}, {}, {})
    for kind, a, b, n in session.execute(union_all(departed, moved, shared)):
        if kind == "departed":
            counts.departed[a] = int(n)
        elif kind == "moved":
            counts.moved[(a, b)] = int(n)
        else:
            counts.shared[(a, b)] = int(n)
    return counts


def anonymous_flows(
    counts: FlowCounts,
    *,
    communities: Sequence[str],
    namespace: str,
    window: str,
    min_authors: int,
) -> dict[str, CommunityFlows]:
    """What may be shown of ``counts``: every community of the namespace, its departed
    count and its top destinations, each value withheld below ``min_authors`` (see the
    module doc)."""
    k = min_authors
    members = sorted(set(communities))
    partners: dict[str, set[str]] = defaultdict(set)
    for a, b in (*counts.moved, *counts.shared):
        partners[a].add(b)
    result: dict[str, CommunityFlows] = {}
    for community in members:
        departed = counts.departed.get(community, 0)

        def rank(other: str, source: str = community) -> tuple[int, int, str]:
            return (
                -counts.moved.get((source, other), 0),
                -counts.shared.get((source, other), 0),
                other,
            )

        # the busiest pairs, then the other members by id (zero counts), up to the bound
        chosen = sorted(partners[community], key=rank)[:TOP_DESTINATIONS]
        for other in members:
            if len(chosen) >= TOP_DESTINATIONS:
                break
            if other != community and other not in chosen:
                chosen.append(other)
        destinations = tuple(
            _destination(counts, community, other, departed=departed, k=k) for other in chosen
        )
        result[community] = CommunityFlows(
            community=community,
            window=window,
            namespace=namespace,
            departed=departed if departed >= k else None,
            destinations=tuple(
                d for d in destinations if d.ratio is not None or d.shared is not None
            ),
            min_authors=k,
        )
    return result


def _destination(
    counts: FlowCounts, community: str, other: str, *, departed: int, k: int
) -> Destination:
    moved = counts.moved.get((community, other), 0)
    shared = counts.shared.get((community, other), 0)
    ratio: float | None = None
    if departed >= k:
        if moved >= k:
            ratio = moved / departed
        elif (k - 1) / departed <= ZERO_TOLERANCE:
            ratio = 0.0
    return Destination(
        community=other,
        ratio=ratio,
        moved=moved if moved >= k and departed >= k else None,
        shared=shared if shared >= k else None,
    )


def namespace_groups(namespaces: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Community ids by namespace; communities without one (feeds) are in none."""
    groups: dict[str, list[str]] = defaultdict(list)
    for community, namespace in namespaces.items():
        if namespace is not None:
            groups[namespace].append(community)
    return {namespace: sorted(ids) for namespace, ids in groups.items()}


def compute_flows(
    session: Session,
    *,
    namespaces: Mapping[str, str | None],
    now: int,
    min_authors: int = DEFAULT_MIN_AUTHORS,
    windows: Iterable[str] = tuple(FLOW_WINDOWS),
) -> dict[str, list[CommunityFlows]]:
    """Every community's flows per window, from ``namespaces`` (community id ->
    namespace, None for none): one query per namespace and window."""
    found: dict[str, list[CommunityFlows]] = defaultdict(list)
    for namespace, members in namespace_groups(namespaces).items():
        for window in windows:
            counts = flow_counts(
                session, communities=members, now=now, seconds=FLOW_WINDOWS[window]
            )
            for community, flows in anonymous_flows(
                counts,
                communities=members,
                namespace=namespace,
                window=window,
                min_authors=min_authors,
            ).items():
                found[community].append(flows)
    return dict(found)
