"""Term counts in the store: staged per day and term while a day is open, kept once it closes.

The k-author rule (``monitor.author_pool``) needs to know who used a
term, but no kept row may say it. So ingest adds to ``term_days`` (community, day,
term, pending posts, the ids of the pseudonymous authors who wrote them) in one bulk
statement per poll, and ``settle`` folds each day whose pool has closed (the day and
the ``pool_days - 1`` days either side of it) into ``term_counts`` (community, day,
term, posts, authors), keeping only terms at least k distinct authors used in that
pool. Until then the day is open: rankings count it from ``term_days`` with the same
rule over the part of its pool seen so far. A staging row lives while its day is open
or in an open day's pool (``2 * pool_days - 1`` days after its day at most, 13 by
default), then it is deleted. Late posts for a settled day are added to its counts; a
term dropped at settlement is not recovered by later posts (it errs on the private side).

A row keeps at most ``AUTHOR_ENTRIES`` author ids: the rule only asks whether k are
distinct (k is at most 32), and a common term's list would otherwise grow with every
poll. One row per day and term, not per author, keeps the write to about one row per
distinct term of a poll.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from itertools import islice

from sqlalchemy import text
from sqlmodel import Session

from monitor.author_pool import TermUses, pooled_counts
from monitor.store.bulk import placeholder

DAY = 86400
AUTHOR_ENTRIES = 64
"""Author ids a staging row keeps at most (twice the largest k: a poll's ids are distinct,
two polls' may repeat one)."""
SETTLE_LOCK = 0x7465726D73  # "terms": replicas on one PostgreSQL settle one at a time


PostTerms = tuple[int, int, Iterable[str]]
"""(UTC day, author id, the post's distinct terms) of one new post."""

StagedRow = tuple[str, int, str, int, str, int]
"""(community, day, term, posts, comma-separated author ids, how many ids) of ``term_days``."""


def record_posts(session: Session, *, community_id: str, posts: Iterable[PostTerms]) -> None:
    """Add the terms of new posts to the staging table: one row per day and term of them
    (its posts, and its authors' ids in the order of first use), in one statement."""
    by_day: dict[int, defaultdict[str, list[str]]] = {}
    for day, author, terms in posts:
        table = by_day.get(day)
        if table is None:
            table = by_day[day] = defaultdict(list)
        # one id per post on each of its (distinct) terms: a list's length is the term's posts
        author_id = str(author)
        for term in terms:
            table[term].append(author_id)
    rows: list[StagedRow] = []
    for day in sorted(by_day):
        table = by_day[day]
        for term in sorted(table):
            ids = table[term]
            if len(ids) == 1:  # most of a poll's terms: one post
                rows.append((community_id, day, term, 1, ids[0], 1))
                continue
            distinct = dict.fromkeys(ids)  # first use first, so the kept ids are the first
            if len(distinct) > AUTHOR_ENTRIES:
                kept = ",".join(islice(distinct, AUTHOR_ENTRIES))
                rows.append((community_id, day, term, len(ids), kept, AUTHOR_ENTRIES))
            else:
                rows.append((community_id, day, term, len(ids), ",".join(distinct), len(distinct)))
    _stage(session, rows)


def _stage(session: Session, rows: list[StagedRow]) -> None:
    """Upsert ``rows`` (sorted by day and term, so concurrent writers lock rows in one
    order) into ``term_days``: posts add up; author ids are appended while a row holds
    fewer than ``AUTHOR_ENTRIES``."""
    if not rows:
        return
    mark = placeholder(session)
    sql = (
        "INSERT INTO term_days (community_id, day, term, pending, authors, author_entries) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}) "
        "ON CONFLICT (community_id, day, term) DO UPDATE SET "
        "pending = term_days.pending + excluded.pending, "
        f"authors = CASE WHEN term_days.author_entries >= {AUTHOR_ENTRIES} "
        "THEN term_days.authors ELSE term_days.authors || ',' || excluded.authors END, "
        f"author_entries = CASE WHEN term_days.author_entries >= {AUTHOR_ENTRIES} "
        "THEN term_days.author_entries "
        "ELSE term_days.author_entries + excluded.author_entries END"
    )
    session.connection().exec_driver_sql(sql, rows)


def _staged(
    session: Session, *, community_id: str, first_day: int, last_day: int
) -> dict[int, dict[str, tuple[int, frozenset[str]]]]:
    """Day -> term -> (pending posts, author ids) of the staging rows in [first, last]."""
    rows = session.execute(
        text(
            "SELECT day, term, pending, authors FROM term_days "
            "WHERE community_id = :community AND day >= :first AND day <= :last"
        ),
        {"community": community_id, "first": first_day, "last": last_day},
    )
    days: dict[int, dict[str, tuple[int, frozenset[str]]]] = {}
    for day, term, pending, authors in rows:
        ids = frozenset(authors.split(",")) if authors else frozenset()
        days.setdefault(int(day), {})[str(term)] = (int(pending), ids)
    return days


def _pending_only(uses: TermUses) -> dict[str, tuple[int, AbstractSet[object]]]:
    return {term: (posts, authors) for term, (posts, authors) in uses.items() if posts > 0}


def pending_counts(
    session: Session, *, community_id: str, days: Iterable[int], k: int, pool_days: int
) -> dict[int, dict[str, tuple[int, int]]]:
    """Day -> term -> (pending posts, distinct authors) for each of ``days``, only terms at
    least ``k`` distinct authors used within ``pool_days - 1`` days of the day (either
    side, as staged so far)."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    reach = (pool_days - 1) * DAY
    staged = _staged(
        session, community_id=community_id, first_day=wanted[0] - reach, last_day=wanted[-1] + reach
    )
    found: dict[int, dict[str, tuple[int, int]]] = {}
    for day in wanted:
        pool: dict[int, TermUses] = dict(staged)
        pool[day] = _pending_only(staged.get(day, {}))
        found[day] = pooled_counts(pool, day=day, k=k, pool_days=pool_days)
    return found


def pending_days(session: Session, *, community_id: str | None = None) -> list[tuple[str, int]]:
    """(community, day) pairs with posts not folded yet, oldest first."""
    where = "pending > 0" + (" AND community_id = :community" if community_id else "")
    rows = session.execute(
        text(
            f"SELECT DISTINCT community_id, day FROM term_days WHERE {where} "
            "ORDER BY community_id, day"
        ),
        {"community": community_id},
    )
    return [(str(c), int(d)) for c, d in rows]


def settle(session: Session, *, now: int, k: int, pool_days: int) -> int:
    """Fold the pending posts of every day whose pool has closed into ``term_counts``, then
    drop the staging rows no open day's pool needs; returns the (community, day) pairs
    folded."""
    if session.get_bind().dialect.name == "postgresql":
        # two replicas folding the same pending rows would count them twice
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETTLE_LOCK})
    today = now - now % DAY
    first_open = today - (pool_days - 1) * DAY
    mark = placeholder(session)
    upsert = (
        "INSERT INTO term_counts (community_id, day, term, posts, authors) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
        "ON CONFLICT (community_id, day, term) DO UPDATE SET "
        "posts = term_counts.posts + excluded.posts, "
        "authors = CASE WHEN excluded.authors > term_counts.authors "
        "THEN excluded.authors ELSE term_counts.authors END"
    )
    closed: dict[str, list[int]] = {}
    for community_id, day in pending_days(session):
        if day < first_open:
            closed.setdefault(community_id, []).append(day)
    folded = 0
    for community_id, days in closed.items():
        counts = pending_counts(
            session, community_id=community_id, days=days, k=k, pool_days=pool_days
        )
        rows = [
            (community_id, day, term, posts, authors)
            for day, terms in sorted(counts.items())
            for term, (posts, authors) in sorted(terms.items())
        ]
        if rows:
            session.connection().exec_driver_sql(upsert, rows)
        session.execute(
            text(
                "UPDATE term_days SET pending = 0 "
                "WHERE community_id = :community AND day < :first_open AND pending > 0"
            ),
            {"community": community_id, "first_open": first_open},
        )
        folded += len(days)
    horizon = first_open - (pool_days - 1) * DAY
    session.execute(text("DELETE FROM term_days WHERE day < :horizon"), {"horizon": horizon})
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
    pending = [day for _, day in pending_days(session, community_id=community_id)]
    found = pending_counts(
        session,
        community_id=community_id,
        days=[day for day in pending if day >= since_day],
        k=k,
        pool_days=pool_days,
    )
    for day, terms in found.items():
        counts = days.setdefault(day, {})
        for term, (posts, _authors) in terms.items():
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
