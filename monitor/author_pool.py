"""The k-author rule: a count of a term exists only when k distinct authors stand behind it.

A day's count of a term is kept only when at least ``k`` distinct authors used the term
within ``pool_days - 1`` days of that day, either side (its author pool), so no kept
count can point to one person (README, "What they talk about now"). The store applies
it when a day settles and to the days still open (``monitor.store.terms``); the rising
terms benchmark applies it to simulated communities. Pure: no store, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

TermUses = Mapping[str, tuple[int, AbstractSet[object]]]
"""One day's uses: term -> (posts holding the term, the distinct authors who wrote them)."""


def pooled_counts(
    days: Mapping[int, TermUses], *, day: int, k: int, pool_days: int, day_seconds: int = 86400
) -> dict[str, tuple[int, int]]:
    """Term -> (posts, distinct authors) of ``day``, for the terms at least ``k`` distinct
    authors used within ``pool_days - 1`` days of ``day`` (either side: those of ``days``
    seen so far); the others are dropped."""
    uses = days.get(day, {})
    pools = {term: set(authors) for term, (_, authors) in uses.items() if len(authors) < k}
    for offset in range(1 - pool_days, pool_days):
        other = days.get(day + offset * day_seconds) if offset else None
        if not other or not pools:
            continue
        for term in pools.keys() & other.keys():
            pools[term].update(other[term][1])
    return {
        term: (posts, len(authors))
        for term, (posts, authors) in uses.items()
        if term not in pools or len(pools[term]) >= k
    }
