"""SQLModel tables. Every schema change is an Alembic migration under alembic/versions.

Times are UTC epoch seconds (integers): comparable, portable between SQLite and
PostgreSQL, and cheap to bucket into days. Authors appear only as keyed
pseudonyms (see ``monitor.privacy``); bodies only when ``store_bodies`` is on.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class Community(SQLModel, table=True):
    __tablename__ = "communities"

    id: str = Field(primary_key=True, max_length=63)
    source: str = Field(max_length=32)
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    data_version: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, server_default="0"),
        description="moves on whenever what analysis reads of the community changes",
    )


class Author(SQLModel, table=True):
    """A pseudonymous author, per community (the same person in two communities is two rows).

    ``pseudonym`` is unlinkable across communities; ``namespace_pseudonym`` is the same for
    one account in every community of one platform namespace (``monitor.privacy``), so
    participant flows can follow a person from one community to another without a name.
    It is None on rows last written before it existed.
    """

    __tablename__ = "authors"
    __table_args__ = (
        UniqueConstraint("community_id", "pseudonym"),
        Index("ix_authors_community_first_seen", "community_id", "first_seen"),
        Index("ix_authors_community_namespace_pseudonym", "community_id", "namespace_pseudonym"),
    )

    id: int | None = Field(default=None, primary_key=True)
    community_id: str = Field(foreign_key="communities.id", max_length=63)
    pseudonym: str = Field(max_length=64)
    namespace_pseudonym: str | None = Field(default=None, max_length=64)
    first_seen: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_seen: int = Field(sa_column=Column(BigInteger, nullable=False))


class Thread(SQLModel, table=True):
    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("community_id", "external_id"),
        Index("ix_threads_community_created", "community_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    community_id: str = Field(foreign_key="communities.id", max_length=63)
    external_id: str = Field(max_length=128)
    author_id: int | None = Field(default=None, foreign_key="authors.id")
    created_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    reply_count: int = 0
    first_reply_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_activity_at: int | None = Field(default=None, sa_column=Column(BigInteger))


class Post(SQLModel, table=True):
    """A thread start (``kind='thread'``) or a reply, unique on (community, external id)."""

    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("community_id", "external_id"),
        Index("ix_posts_community_created", "community_id", "created_at"),
        Index("ix_posts_community_thread", "community_id", "thread_external_id"),
        # only kept bodies: expiring them reads these, not every post of the history
        Index(
            "ix_posts_body_expires",
            "body_expires_at",
            sqlite_where=text("body_expires_at IS NOT NULL"),
            postgresql_where=text("body_expires_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    community_id: str = Field(foreign_key="communities.id", max_length=63)
    external_id: str = Field(max_length=128)
    thread_external_id: str = Field(max_length=128)
    parent_external_id: str | None = Field(default=None, max_length=128)
    kind: str = Field(max_length=8)
    author_id: int | None = Field(default=None, foreign_key="authors.id")
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    edited_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    deleted: bool = False
    sentiment: float | None = None
    keyword_groups: str = Field(default="", max_length=512)
    content_hash: str = Field(default="", max_length=64)
    url: str | None = Field(default=None, max_length=2048)
    body: str | None = Field(default=None, sa_column=Column(Text))
    body_expires_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    fetched_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class PollState(SQLModel, table=True):
    """Where the next poll of a community resumes, and how the last ones went."""

    __tablename__ = "poll_state"

    community_id: str = Field(primary_key=True, foreign_key="communities.id", max_length=63)
    cursor: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    validators: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    last_attempt_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_success_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_error: str | None = Field(default=None, max_length=500)
    last_error_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    consecutive_failures: int = 0
    not_before: int | None = Field(default=None, sa_column=Column(BigInteger))


class PollRun(SQLModel, table=True):
    """One poll attempt: the recent poll history (``retention.POLL_HISTORY_DAYS``).

    Coverage is not read from here but from ``CoverageSpan``, which each successful
    run (and backfill) extends in the same transaction.
    """

    __tablename__ = "poll_runs"
    __table_args__ = (Index("ix_poll_runs_community_started", "community_id", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    community_id: str = Field(foreign_key="communities.id", max_length=63)
    started_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    finished_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    outcome: str = Field(max_length=32)
    new_items: int = 0
    requests: int = 0
    covered_from: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=True),
        description="a successful poll's data is complete from here to finished_at",
    )


class CoverageSpan(SQLModel, table=True):
    """A stretch of time a community's data is complete for: the successful polls and
    backfills that cover it, merged. One community's spans never overlap nor touch, so
    each new span rewrites a handful of rows (``monitor.analysis.coverage.add_span``)."""

    __tablename__ = "coverage_spans"
    __table_args__ = (Index("ix_coverage_spans_community_until", "community_id", "covered_until"),)

    community_id: str = Field(primary_key=True, foreign_key="communities.id", max_length=63)
    covered_from: int = Field(sa_column=Column(BigInteger, primary_key=True))
    covered_until: int = Field(sa_column=Column(BigInteger, nullable=False))


class DailyRollup(SQLModel, table=True):
    """Per community and UTC day: counts that windows and trends are summed from."""

    __tablename__ = "daily_rollups"

    community_id: str = Field(primary_key=True, foreign_key="communities.id", max_length=63)
    day: int = Field(
        sa_column=Column(BigInteger, primary_key=True, comment="UTC midnight, epoch seconds")
    )
    posts: int = 0
    threads_started: int = 0
    replies: int = 0
    active_participants: int = 0
    new_participants: int = 0
    sentiment_sum: float = 0.0
    sentiment_count: int = 0
    negative_posts: int = 0
    updated_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class PseudonymKey(SQLModel, table=True):
    """A pseudonym key this store was written with, known by its fingerprint only.

    The newest row is the key in use. ``counts_anew`` marks a key accepted in place of
    another (``--accept-new-key``): from its ``first_used_at`` every author is counted
    anew, so participant counts across that moment do not link.
    """

    __tablename__ = "pseudonym_keys"

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, description="HMAC(key, a fixed label), hex")
    first_used_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    counts_anew: bool = False


class Lease(SQLModel, table=True):
    """Which replica polls a community, until when (PostgreSQL's clock, epoch seconds).

    A replica renews its leases while it lives; one that stops (SIGKILL, a lost host)
    loses them when they expire, and another claims them (``monitor.leases``).
    """

    __tablename__ = "leases"

    community_id: str = Field(primary_key=True, max_length=63)
    holder: str = Field(max_length=96, index=True)
    expires_at: float = Field(sa_column=Column(Float, nullable=False))


class Replica(SQLModel, table=True):
    """A live ``serve`` process sharing the store: its last heartbeat (epoch seconds)."""

    __tablename__ = "replicas"

    id: str = Field(primary_key=True, max_length=96)
    seen_at: float = Field(sa_column=Column(Float, nullable=False))


TERM_CHARS = 65
"""Longest term (``monitor.analysis.terms.MAX_TERM_CHARS``: two words of 32 and a space)."""


class TermDay(SQLModel, table=True):
    """A term's posts on a day not yet folded into ``term_counts``, and who wrote them:
    short-lived, for the k-author rule (``monitor.store.terms``).

    Rows live while their day is open (its author pool, ``terms.author_pool_days`` either
    side, has not closed yet) or in an open day's pool, then they are deleted.
    """

    __tablename__ = "term_days"
    # SQLite keeps the rows in the primary key's tree, not in a rowid table beside it:
    # ingest's upsert of a poll's (day, term) rows writes one tree, not two (ignored on
    # PostgreSQL)
    __table_args__ = {"sqlite_with_rowid": False}

    community_id: str = Field(primary_key=True, foreign_key="communities.id", max_length=63)
    day: int = Field(sa_column=Column(BigInteger, primary_key=True, comment="UTC midnight"))
    term: str = Field(primary_key=True, max_length=TERM_CHARS)
    pending: int = 0
    """Posts holding the term that day not yet folded into ``term_counts``."""
    authors: str = Field(default="", sa_column=Column(Text, nullable=False))
    """Author ids (``authors.id``, pseudonymous), comma-separated, at most about 64."""
    author_entries: int = 0
    """How many ids ``authors`` holds (a poll's are distinct; two polls' may repeat one)."""


class TermCount(SQLModel, table=True):
    """Posts per community, UTC day and term, for terms at least k distinct authors used."""

    __tablename__ = "term_counts"

    community_id: str = Field(primary_key=True, foreign_key="communities.id", max_length=63)
    day: int = Field(sa_column=Column(BigInteger, primary_key=True, comment="UTC midnight"))
    term: str = Field(primary_key=True, max_length=TERM_CHARS)
    posts: int = 0
    authors: int = 0
