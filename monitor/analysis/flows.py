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

All of it is read from each author's ``last_seen`` in the ``authors`` table: one read per
namespace, counted in memory (``flow_counts``), no scan of posts. Authors last written
before namespace pseudonyms existed have none and are not counted (see the README).

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

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sqlmodel import Session

from monitor.store.bulk import select_in

DAY = 86_400
FLOW_WINDOWS = {"28d": 28 * DAY}
"""Window name -> seconds; departed authors were active in the window before it."""
DEFAULT_MIN_AUTHORS = 5
ZERO_TOLERANCE = 0.10
"""A ratio with fewer than k movers is shown as 0 only when k - 1 movers are at most this
share of the departed (so the 0 is at most 10 points off)."""
TOP_DESTINATIONS = 10
"""Destinations kept per community and window: bounds the series at 1,000 communities."""


@dataclass(frozen=True)
class FlowCounts:
    """Raw counts of one namespace and window, before k-anonymity: never shown as such."""

    departed: dict[str, int]
    moved: dict[tuple[str, str], int]
    """(from, to) -> departed(from) active in to, for each from's busiest partners."""
    shared: dict[tuple[str, str], int]
    """(a, b) -> active in both, for each a's busiest partners (so (b, a) is there when a
    is among b's)."""


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
    session: Session,
    *,
    communities: Sequence[str],
    now: int,
    seconds: int,
    keep: int = TOP_DESTINATIONS,
) -> FlowCounts:
    """The counts of ``communities`` (one namespace): one indexed read of their authors
    last seen in the two windows, counted in memory as sparse products.

    Counting pairs in SQL joined every author with each of their other communities: the
    work grows with the square of how many watched communities one person posts in (a
    namespace of 500 communities sharing 400 regulars kept a PostgreSQL core busy). Here
    the database reads each (community, person) once, and departed x active and active x
    active are products of two sparse incidence matrices. Of each community's partners only
    the ``keep`` busiest (most movers, then most shared, then by id) are kept: all that
    ``anonymous_flows`` shows, and the memory stays linear in communities."""
    members = sorted(set(communities))
    rows = select_in(
        session,
        "SELECT community_id, namespace_pseudonym, last_seen FROM authors "
        "WHERE last_seen >= {mark} AND namespace_pseudonym IS NOT NULL "
        "AND community_id IN ({marks})",
        (now - 2 * seconds,),
        members,
    )
    return count_flows(members, rows, middle=now - seconds, keep=keep)


def flow_counts_until(
    session: Session,
    *,
    communities: Sequence[str],
    until: int,
    seconds: int,
    keep: int = TOP_DESTINATIONS,
) -> FlowCounts:
    """The counts as they stood at ``until`` (a past period's end): each author's last post
    before ``until`` in each community, read from the stored posts (the ``authors`` table
    keeps only the latest sighting). At the present it counts what ``flow_counts`` does,
    for posts still kept."""
    members = sorted(set(communities))
    rows = select_in(
        session,
        "SELECT posts.community_id, authors.namespace_pseudonym, max(posts.created_at) "
        "FROM posts JOIN authors ON authors.id = posts.author_id "
        "WHERE posts.created_at >= {mark} AND posts.created_at < {mark} "
        "AND authors.namespace_pseudonym IS NOT NULL AND posts.community_id IN ({marks}) "
        "GROUP BY posts.community_id, authors.namespace_pseudonym",
        (until - 2 * seconds, until),
        members,
    )
    return count_flows(members, rows, middle=until - seconds, keep=keep)


def count_flows(
    members: Sequence[str],
    rows: Sequence[tuple[str, str, int]],
    *,
    middle: int,
    keep: int = TOP_DESTINATIONS,
) -> FlowCounts:
    """``rows`` (community, person, last seen), all at or after the previous window's
    start, counted: a person seen before ``middle`` departed, from ``middle`` on active."""
    index = {community: i for i, community in enumerate(members)}
    persons: dict[str, int] = {}
    n = len(rows)
    where, who, seen = zip(*rows, strict=True) if rows else ((), (), ())
    row = np.fromiter(map(index.__getitem__, where), dtype=np.int64, count=n)
    person = np.fromiter(
        (persons.setdefault(p, len(persons)) for p in who), dtype=np.int64, count=n
    )
    active = np.fromiter(seen, dtype=np.int64, count=n) >= middle
    shape = (len(members), max(len(persons), 1))
    gone = _incidence(row[~active], person[~active], shape)
    here = _incidence(row[active], person[active], shape)
    departed = np.diff(gone.indptr)
    # moved and shared in one matrix: moved * base + shared, with shared < base
    base = shape[1] + 1
    moved = (gone @ here.T).tocsr().astype(np.int64)
    shared = (here @ here.T).tocsr().astype(np.int64)
    both = (moved * base + shared).tocsr()
    both.setdiag(0)
    both.eliminate_zeros()
    counts = FlowCounts({members[i]: int(d) for i, d in enumerate(departed) if d}, {}, {})
    for a in range(len(members)):
        lo, hi = both.indptr[a], both.indptr[a + 1]
        partners, values = both.indices[lo:hi], both.data[lo:hi]
        if len(partners) > keep:  # the busiest, ties by id (members are sorted)
            best = np.lexsort((partners, -values))[:keep]
            partners, values = partners[best], values[best]
        for b, value in zip(partners.tolist(), values.tolist(), strict=True):
            went, common = divmod(value, base)
            if went:
                counts.moved[(members[a], members[b])] = went
            if common:
                counts.shared[(members[a], members[b])] = common
    return counts


def _incidence(
    rows: npt.NDArray[np.int64], columns: npt.NDArray[np.int64], shape: tuple[int, int]
) -> sparse.csr_matrix:
    """community x person, 1 where the person has a row (duplicates count once)."""
    found = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, columns)), shape=shape)
    found.sum_duplicates()
    found.data[:] = 1
    return found


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
