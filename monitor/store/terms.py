"""Term counts in the store: staged per author while a day is open, kept per day once it closes.

The k-author rule (``monitor.analysis.terms.pooled_counts``, same rule in SQL here)
needs to know who used a term, but no kept row may say it. So ingest adds to
``term_authors`` (community, day, term, author pseudonym id, pending posts) in one
bulk statement, and ``settle`` folds each day whose pool has closed (the day and
the ``pool_days - 1`` days either side of it) into ``term_counts`` (community, day,
term, posts, authors), keeping only terms at least k distinct authors used in that
pool. Until then the day is open: rankings count it from the staging rows with the
same rule over the part of its pool seen so far. A staging row lives while its day
is open or in an open day's pool (``2 * pool_days - 1`` days after its day at most,
13 by default), then it is deleted. Late posts for a settled day are added to its counts; a term
dropped at settlement is not recovered by later posts (it errs on the private side).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text
from sqlmodel import Session

DAY = 86400
SETTLE_LOCK = 0x7465726D73  # "terms": replicas on one PostgreSQL settle one at a time

TermUse = tuple[int, str, int]
"""(UTC day, term, author id)."""


def _mark(session: Session) -> str:
    return "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"


def record_uses(session: Session, *, community_id: str, uses: Mapping[TermUse, int]) -> None:
    """Add ``uses`` (posts per day, term and author) to the staging table: one statement."""
    if not uses:
        return
    mark = _mark(session)
    sql = (
        "INSERT INTO term_authors (community_id, day, term, author_id, pending, folded) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}) "
        "ON CONFLICT (community_id, day, term, author_id) "
        "DO UPDATE SET pending = term_authors.pending + excluded.pending"
    )
    rows = [
        (community_id, day, term, author, posts, False)
        for (day, term, author), posts in sorted(uses.items())
    ]
    session.connection().exec_driver_sql(sql, rows)


_POOLED = """
SELECT t.term, SUM(t.pending), SUM(CASE WHEN t.folded THEN 0 ELSE 1 END)
FROM term_authors t
WHERE t.community_id = :community AND t.day = :day AND t.pending > 0
  AND t.term IN (
    SELECT p.term FROM term_authors p
    WHERE p.community_id = :community AND p.day >= :pool_start AND p.day <= :pool_end
    GROUP BY p.term HAVING COUNT(DISTINCT p.author_id) >= :k
  )
GROUP BY t.term
"""


def pending_counts(
    session: Session, *, community_id: str, day: int, k: int, pool_days: int
) -> dict[str, tuple[int, int]]:
    """Term -> (posts, new authors) of ``day``'s not yet folded uses, for the terms at least
    ``k`` distinct authors used within ``pool_days - 1`` days of ``day``, either side."""
    params = {
        "community": community_id,
        "day": day,
        "pool_start": day - (pool_days - 1) * DAY,
        "pool_end": day + (pool_days - 1) * DAY,
        "k": k,
    }
    return {
        str(term): (int(posts), int(authors))
        for term, posts, authors in session.execute(text(_POOLED), params)
    }


def pending_days(session: Session, *, community_id: str | None = None) -> list[tuple[str, int]]:
    """(community, day) pairs with uses not folded yet, oldest first."""
    where = "pending > 0" + (" AND community_id = :community" if community_id else "")
    rows = session.execute(
        text(
            f"SELECT DISTINCT community_id, day FROM term_authors WHERE {where} "
            "ORDER BY community_id, day"
        ),
        {"community": community_id},
    )
    return [(str(c), int(d)) for c, d in rows]


def settle(session: Session, *, now: int, k: int, pool_days: int) -> int:
    """Fold the pending uses of every day whose pool has closed into ``term_counts``, then
    drop the staging rows no open day's pool needs; returns the (community, day) pairs
    folded."""
    if session.get_bind().dialect.name == "postgresql":
        # two replicas folding the same pending rows would count them twice
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETTLE_LOCK})
    today = now - now % DAY
    first_open = today - (pool_days - 1) * DAY
    mark = _mark(session)
    upsert = (
        "INSERT INTO term_counts (community_id, day, term, posts, authors) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
        "ON CONFLICT (community_id, day, term) DO UPDATE SET "
        "posts = term_counts.posts + excluded.posts, "
        "authors = term_counts.authors + excluded.authors"
    )
    folded = 0
    for community_id, day in pending_days(session):
        if day >= first_open:
            continue
        counts = pending_counts(
            session, community_id=community_id, day=day, k=k, pool_days=pool_days
        )
        if counts:
            session.connection().exec_driver_sql(
                upsert,
                [(community_id, day, term, p, a) for term, (p, a) in sorted(counts.items())],
            )
        session.execute(
            text(
                "UPDATE term_authors SET pending = 0, folded = :yes "
                "WHERE community_id = :community AND day = :day AND pending > 0"
            ),
            {"yes": True, "community": community_id, "day": day},
        )
        folded += 1
    horizon = first_open - (pool_days - 1) * DAY
    session.execute(text("DELETE FROM term_authors WHERE day < :horizon"), {"horizon": horizon})
    return folded


def purge(session: Session, *, now: int, retention_days: int) -> int:
    """Delete term counts of days older than ``retention_days``; returns rows deleted."""
    today = now - now % DAY
    cutoff = today - (retention_days - 1) * DAY
    result = session.execute(
        text("DELETE FROM term_counts WHERE day < :cutoff"), {"cutoff": cutoff}
    )
    return int(getattr(result, "rowcount", 0) or 0)


def daily_term_posts(
    session: Session, *, community_id: str, since_day: int, k: int, pool_days: int
) -> dict[int, dict[str, int]]:
    """Day -> term -> posts from ``since_day`` on: the kept counts, plus what settling the
    days still pending would add (so the open days count before they close)."""
    days: dict[int, dict[str, int]] = {}
    kept = session.execute(
        text(
            "SELECT day, term, posts FROM term_counts "
            "WHERE community_id = :community AND day >= :since"
        ),
        {"community": community_id, "since": since_day},
    )
    for day, term, posts in kept:
        days.setdefault(int(day), {})[str(term)] = int(posts)
    for _, day in pending_days(session, community_id=community_id):
        if day < since_day:
            continue
        counts = days.setdefault(day, {})
        found = pending_counts(
            session, community_id=community_id, day=day, k=k, pool_days=pool_days
        )
        for term, (posts, _authors) in found.items():
            counts[term] = counts.get(term, 0) + posts
    return days


def daily_posts(
    session: Session, *, community_id: str, since_day: int, until: int
) -> dict[int, int]:
    """Day -> posts created (with or without terms), ``since_day`` <= created < ``until``."""
    rows = session.execute(
        text(
            "SELECT created_at - created_at % 86400 AS day, COUNT(*) FROM posts "
            "WHERE community_id = :community AND created_at >= :since AND created_at < :until "
            "GROUP BY created_at - created_at % 86400"
        ),
        {"community": community_id, "since": since_day, "until": until},
    )
    return {int(day): int(count) for day, count in rows}
