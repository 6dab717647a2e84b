"""Normalized items -> the store. The only writer of posts.

A poll's ``Batch`` is written in two steps:

1. ``Ingestor.prepare``, before any transaction: authors become keyed pseudonyms,
   each item gets its content hash, and the text of every item that is new or
   changed (against ``known_hashes``, a plain read of the store) is scored for
   sentiment and keyword groups. This is the CPU-heavy part.
2. ``Ingestor.ingest`` inside the caller's write transaction: posts are upserted by
   (community, external id), threads and authors updated, and the poll's new cursor
   is written next to the items it covers, so that a crash leaves either all of it or
   none of it. It only looks the prepared values up; should another writer have
   changed a post between the two steps so that a score is missing, it raises
   ``StalePreparation`` before writing anything and the caller prepares again.

Called without a prepared batch, ``ingest`` prepares it itself, in the transaction
(the one-step form tests and benchmarks use).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlmodel import Session

from monitor.analysis.coverage import BACKFILL_OUTCOME, GRACE_INTERVALS, add_span
from monitor.analysis.rollups import day_of
from monitor.analysis.terms import post_terms
from monitor.analysis.text import KeywordMatcher, sentiment, strip_markup
from monitor.config import CommunityBase, Settings
from monitor.privacy import namespace_pseudonym, pseudonym
from monitor.sources import account_name, author_namespace
from monitor.sources.base import Batch, Envelope, Item
from monitor.store.bulk import bulk_insert, bulk_update, select_in
from monitor.store.changes import COMMUNITIES, mark_changed
from monitor.store.models import Author, Community, PollRun, PollState, Post, Thread
from monitor.store.terms import PostTerms, record_posts

_NOTHING_TO_SCORE = {"", "[deleted]", "[removed]"}


@dataclass(frozen=True, slots=True)
class Scored:
    """What scoring derives from one item's text."""

    sentiment: float | None
    keyword_groups: str
    text: str
    """The text as scored (markup stripped), kept as the body when bodies are stored."""


_NOTHING_SCORED = Scored(None, "", "")


@dataclass(frozen=True)
class Prepared:
    """A batch's derived values, computed before its write transaction opens."""

    aliases: Mapping[str, str]
    """Author name -> pseudonym (the name is only a key here, never stored)."""
    hashes: Mapping[str, str]
    """External id -> content hash."""
    scored: Mapping[str, Scored]
    """External id -> score, for every item new or changed when the store was read."""
    linkable: Mapping[str, str | None] = field(default_factory=dict)
    """Author name -> namespace pseudonym (None where the source has no namespace)."""
    terms: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """External id -> terms, for every item new when the store was read (terms on)."""


class StalePreparation(Exception):
    """A post changed in the store after the batch was prepared and its new version needs
    a score the preparation did not compute: prepare again with ``known``."""

    def __init__(self, known: dict[str, str]) -> None:
        super().__init__("the store changed since the batch was prepared")
        self.known = known


@dataclass
class IngestResult:
    new_items: int = 0
    updated_items: int = 0
    new_by_kind: Counter[str] = field(default_factory=Counter)
    touched_days: set[int] = field(default_factory=set)


POSTS = cast(Table, Post.__table__)  # type: ignore[attr-defined]
AUTHORS = cast(Table, Author.__table__)  # type: ignore[attr-defined]
THREADS = cast(Table, Thread.__table__)  # type: ignore[attr-defined]
POLL_STATES = cast(Table, PollState.__table__)  # type: ignore[attr-defined]


_THREAD_STATS = ("author_id", "created_at", "reply_count", "first_reply_at", "last_activity_at")


@dataclass(frozen=True, slots=True)
class _KnownPost:
    id: int
    content_hash: str
    created_at: int
    has_body: bool


def _apply_to_thread(thread: dict[str, Any], post: dict[str, Any]) -> None:
    created = post["created_at"]
    if post["kind"] == "thread":
        thread["created_at"] = created
        thread["author_id"] = post["author_id"]
    else:
        thread["reply_count"] += 1
        if thread["first_reply_at"] is None or created < thread["first_reply_at"]:
            thread["first_reply_at"] = created
    if thread["last_activity_at"] is None or created > thread["last_activity_at"]:
        thread["last_activity_at"] = created


def content_hash(item: Item) -> str:
    parts = (item.title, item.text, str(item.deleted), str(item.edited_at))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def scoring_text(item: Item) -> str:
    text = strip_markup(item.text) if item.text_is_html else item.text
    return f"{item.title}\n{text}".strip() if item.title else text.strip()


def item_terms(item: Item, *, scored: Scored | None = None) -> frozenset[str]:
    """The terms the item's text holds (``monitor.analysis.terms``); none for a deleted one.
    ``scored``, the item's score when at hand, saves building its text again."""
    if item.deleted:
        return frozenset()
    text = scoring_text(item) if scored is None else scored.text
    return frozenset() if text in _NOTHING_TO_SCORE else post_terms(text)


class Ingestor:
    """Writes batches for the communities of one ``Settings``."""

    def __init__(self, *, settings: Settings, key: bytes) -> None:
        self._settings = settings
        self._key = key
        self._matchers: dict[str, KeywordMatcher] = {}

    def _matcher(self, community: CommunityBase) -> KeywordMatcher:
        if community.id not in self._matchers:
            groups = self._settings.keyword_groups_for(community)
            self._matchers[community.id] = KeywordMatcher(groups)
        return self._matchers[community.id]

    def known_hashes(self, session: Session, *, community_id: str, batch: Batch) -> dict[str, str]:
        """External id -> content hash of the batch's items the store holds (a read)."""
        existing = self._existing_posts(session, community_id, batch.envelopes)
        return {external_id: post.content_hash for external_id, post in existing.items()}

    def prepare(
        self, *, community: CommunityBase, batch: Batch, known: Mapping[str, str]
    ) -> Prepared:
        """Pseudonyms, content hashes and the scores of the items not in ``known`` with the
        same hash (``known_hashes``); touches no database."""
        source = str(getattr(community, "source", ""))
        namespace = author_namespace(community)
        count_terms = self._settings.terms.enabled
        aliases: dict[str, str] = {}
        linkable: dict[str, str | None] = {}
        hashes: dict[str, str] = {}
        to_score: list[Item] = []
        terms: dict[str, frozenset[str]] = {}
        for envelope in batch.envelopes:
            item = envelope.item
            name = item.author
            if name and name not in aliases:
                aliases[name] = pseudonym(
                    self._key, source=source, community=community.id, name=name
                )
                linkable[name] = (
                    None
                    if namespace is None
                    else namespace_pseudonym(
                        self._key, namespace=namespace, name=account_name(community, name)
                    )
                )
            digest = hashes[item.external_id] = content_hash(item)
            if known.get(item.external_id) != digest:
                to_score.append(item)
        # in order: an id twice in the batch keeps its last score, as it would one by one
        ids = [item.external_id for item in to_score]
        scored = dict(zip(ids, self._score(community, to_score), strict=True))
        # Tokenized in a pass of its own, not between two VADER calls, so that neither
        # evicts the other's tables from the CPU caches at every post.
        for envelope in batch.envelopes if count_terms else ():
            item = envelope.item
            if item.author and item.external_id not in known:
                terms[item.external_id] = item_terms(item, scored=scored.get(item.external_id))
        return Prepared(
            aliases=aliases, hashes=hashes, scored=scored, linkable=linkable, terms=terms
        )

    def ingest(
        self,
        session: Session,
        *,
        community: CommunityBase,
        batch: Batch,
        started_at: int,
        now: int,
        prepared: Prepared | None = None,
    ) -> IngestResult:
        """Upsert the batch's items and commit-ready poll state into ``session``."""
        result = self.write_items(
            session, community=community, batch=batch, now=now, prepared=prepared
        )
        self._commit_state(
            session,
            community=community,
            batch=batch,
            started_at=started_at,
            now=now,
            new_items=result.new_items,
        )
        session.flush()
        return result

    def write_items(
        self,
        session: Session,
        *,
        community: CommunityBase,
        batch: Batch,
        now: int,
        prepared: Prepared | None = None,
    ) -> IngestResult:
        """Upsert the batch's items into ``session``; the poll state is left as it is.

        With ``prepared`` nothing is scored here (``StalePreparation`` if a score is
        missing); without, the batch is prepared here, in the caller's transaction.
        Rows are written with bulk Core statements (one INSERT per table and batch),
        since per-object ORM overhead would cost more than scoring the text.
        """
        existing = self._existing_posts(session, community.id, batch.envelopes)
        if prepared is None:
            known = {external_id: post.content_hash for external_id, post in existing.items()}
            prepared = self.prepare(community=community, batch=batch, known=known)
        else:
            _check_prepared(prepared, batch, existing)
        ensure_community(session, community=community, now=now)
        result = IngestResult()
        authors, moved_days = self._authors(
            session,
            community=community,
            envelopes=batch.envelopes,
            aliases=prepared.aliases,
            linkables=prepared.linkable,
        )
        result.touched_days.update(moved_days)
        new_rows: list[dict[str, Any]] = []
        changed_rows: list[dict[str, Any]] = []
        with_terms: list[PostTerms] = []
        count_terms = self._settings.terms.enabled
        new_kinds: list[str] = []
        new_days: set[int] = set()
        for envelope in batch.envelopes:
            item = envelope.item
            author_id = authors.get(item.author) if item.author else None
            known_post = existing.get(item.external_id)
            digest = prepared.hashes[item.external_id]
            if known_post is None:
                scored = prepared.scored[item.external_id]
                new_rows.append(self._new_post(community.id, envelope, author_id, scored, digest))
                day = day_of(item.created_at)
                if author_id is not None and count_terms:
                    found = prepared.terms.get(item.external_id)
                    if found is None:  # stored when prepared, deleted since: rare
                        found = item_terms(item)
                    with_terms.append((day, author_id, found))
                new_kinds.append(item.kind)
                new_days.add(day)
            elif (change := self._post_change(known_post, item, prepared, now=now)) is not None:
                changed_rows.append(change)
                result.updated_items += 1
                result.touched_days.add(day_of(known_post.created_at))
        result.new_items += len(new_kinds)
        result.new_by_kind.update(new_kinds)
        result.touched_days.update(new_days)
        if new_rows:
            bulk_insert(session, POSTS, new_rows)
        for row in changed_rows:  # edits and deletions are rare: one statement each
            post_id = row.pop("post_id")
            session.execute(update(POSTS).where(POSTS.c.id == post_id).values(**row))
        self._update_threads(session, community.id, new_rows)
        record_posts(session, community_id=community.id, posts=with_terms)
        if new_rows or changed_rows:
            mark_changed(session, community_id=community.id)
        session.flush()
        return result

    def _authors(
        self,
        session: Session,
        *,
        community: CommunityBase,
        envelopes: Sequence[Envelope],
        aliases: Mapping[str, str],
        linkables: Mapping[str, str | None],
    ) -> tuple[dict[str, int], set[int]]:
        """Author ids by source name (the name is only a key here, never stored), and the
        days whose new-participant count changes because an author's first post moved."""
        by_name: dict[str, str] = {}
        linkable: dict[str, str | None] = {}  # pseudonym -> namespace pseudonym
        span: dict[str, tuple[int, int]] = {}
        for envelope in envelopes:
            name = envelope.item.author
            if not name:
                continue
            alias = by_name[name] = aliases[name]
            linkable[alias] = linkables.get(name)
            created = envelope.item.created_at
            low, high = span.get(alias, (created, created))
            span[alias] = (min(low, created), max(high, created))
        found = self._author_rows(session, community.id, list(span))
        moved_days: set[int] = set()
        fresh = [
            {
                "community_id": community.id,
                "pseudonym": alias,
                "namespace_pseudonym": linkable[alias],
                "first_seen": low,
                "last_seen": high,
            }
            for alias, (low, high) in span.items()
            if alias not in found
        ]
        widened = []
        # rows written before namespace pseudonyms existed get theirs when seen again
        linked = [
            {"id": found[alias][0], "namespace_pseudonym": linkable[alias]}
            for alias in span
            if alias in found and found[alias][3] is None and linkable[alias] is not None
        ]
        bulk_update(session, AUTHORS, linked)
        for alias, (low, high) in span.items():
            if alias not in found:
                continue
            author_id, first_seen, last_seen, _ = found[alias]
            if low < first_seen or high > last_seen:
                if low < first_seen:
                    moved_days.update((day_of(first_seen), day_of(low)))
                widened.append(
                    {
                        "id": author_id,
                        "first_seen": min(low, first_seen),
                        "last_seen": max(high, last_seen),
                    }
                )
        bulk_update(session, AUTHORS, widened)
        if fresh:
            bulk_insert(session, AUTHORS, fresh)
            inserted = [str(row["pseudonym"]) for row in fresh]
            found.update(self._author_rows(session, community.id, inserted))
        return {name: found[alias][0] for name, alias in by_name.items()}, moved_days

    @staticmethod
    def _author_rows(
        session: Session, community_id: str, aliases: Sequence[str]
    ) -> dict[str, tuple[int, int, int, str | None]]:
        rows: dict[str, tuple[int, int, int, str | None]] = {}
        for alias, author_id, first_seen, last_seen, linked in select_in(
            session,
            "SELECT pseudonym, id, first_seen, last_seen, namespace_pseudonym FROM authors "
            "WHERE community_id = {mark} AND pseudonym IN ({marks})",
            (community_id,),
            aliases,
        ):
            rows[alias] = (author_id, first_seen, last_seen, linked)
        return rows

    def _existing_posts(
        self, session: Session, community_id: str, envelopes: Sequence[Envelope]
    ) -> dict[str, _KnownPost]:
        posts: dict[str, _KnownPost] = {}
        for external_id, post_id, digest, created_at, has_body in select_in(
            session,
            "SELECT external_id, id, content_hash, created_at, body IS NOT NULL FROM posts "
            "WHERE community_id = {mark} AND external_id IN ({marks})",
            (community_id,),
            [e.item.external_id for e in envelopes],
        ):
            posts[external_id] = _KnownPost(post_id, digest, created_at, bool(has_body))
        return posts

    def _score(self, community: CommunityBase, items: Sequence[Item]) -> list[Scored]:
        """The scores of ``items``, in order. Each step is a pass of its own over the texts
        (markup stripped, keyword groups, then VADER), so that VADER runs as tight a loop as
        it would alone, its tables not evicted from the CPU caches at every post."""
        texts = [scoring_text(item) for item in items]
        scoreable = [text for text in texts if text not in _NOTHING_TO_SCORE]
        matcher = self._matcher(community)
        groups = [",".join(matcher.groups_in(text)) for text in scoreable]
        sentiments = [sentiment(text) for text in scoreable]
        found = iter(zip(sentiments, groups, scoreable, strict=True))
        # nothing left to score: no score, no groups, no text; the post still counts
        return [
            _NOTHING_SCORED if text in _NOTHING_TO_SCORE else Scored(*next(found)) for text in texts
        ]

    def _new_post(
        self,
        community_id: str,
        envelope: Envelope,
        author_id: int | None,
        scored: Scored,
        digest: str,
    ) -> dict[str, Any]:
        item = envelope.item
        score, groups, text = scored.sentiment, scored.keyword_groups, scored.text
        keep_body = self._settings.store_bodies and bool(text)
        return {
            "community_id": community_id,
            "external_id": item.external_id,
            "thread_external_id": item.thread_id,
            "parent_external_id": item.parent_id,
            "kind": item.kind,
            "author_id": author_id,
            "created_at": item.created_at,
            "edited_at": item.edited_at,
            "deleted": item.deleted,
            "sentiment": score,
            "keyword_groups": groups,
            "content_hash": digest,
            "url": item.url,
            "body": text if keep_body else None,
            "body_expires_at": (
                envelope.fetched_at + self._settings.retention_days * 86400 if keep_body else None
            ),
            "fetched_at": envelope.fetched_at,
        }

    @staticmethod
    def _post_change(
        known: _KnownPost, item: Item, prepared: Prepared, *, now: int
    ) -> dict[str, Any] | None:
        """The columns an edit or a deletion changes; None when the item is unchanged."""
        digest = prepared.hashes[item.external_id]
        if digest == known.content_hash:
            return None
        if item.deleted:
            # keep the score it had while it was readable; drop any kept text
            return {
                "post_id": known.id,
                "content_hash": digest,
                "deleted": True,
                "body": None,
                "body_expires_at": None,
            }
        scored = prepared.scored[item.external_id]
        change: dict[str, Any] = {
            "post_id": known.id,
            "content_hash": digest,
            "edited_at": item.edited_at or now,
            "sentiment": scored.sentiment,
            "keyword_groups": scored.keyword_groups,
        }
        if known.has_body:
            change["body"] = scored.text
        return change

    def _update_threads(
        self, session: Session, community_id: str, new_rows: Sequence[dict[str, Any]]
    ) -> None:
        if not new_rows:
            return
        wanted = sorted({row["thread_external_id"] for row in new_rows})
        columns = [column.name for column in THREADS.columns]
        threads: dict[str, dict[str, Any]] = {}
        for found in select_in(
            session,
            f"SELECT {', '.join(columns)} FROM threads "
            "WHERE community_id = {mark} AND external_id IN ({marks})",
            (community_id,),
            wanted,
        ):
            row = dict(zip(columns, found, strict=True))
            threads[row["external_id"]] = row
        fresh: set[str] = set()
        for row in new_rows:
            key = row["thread_external_id"]
            thread = threads.get(key)
            if thread is None:
                thread = threads[key] = {
                    "community_id": community_id,
                    "external_id": key,
                    "author_id": None,
                    "created_at": None,
                    "reply_count": 0,
                    "first_reply_at": None,
                    "last_activity_at": None,
                }
                fresh.add(key)
            _apply_to_thread(thread, row)
        if fresh:
            bulk_insert(session, THREADS, [threads[key] for key in sorted(fresh)])
        changed = [
            {"id": threads[key]["id"], **{c: threads[key][c] for c in _THREAD_STATS}}
            for key in wanted
            if key not in fresh
        ]
        bulk_update(session, THREADS, changed)

    def _commit_state(
        self,
        session: Session,
        *,
        community: CommunityBase,
        batch: Batch,
        started_at: int,
        now: int,
        new_items: int,
    ) -> None:
        state = session.get(PollState, community.id) or PollState(community_id=community.id)
        covered_from = self._covered_from(batch, state.last_success_at, started_at)
        state.cursor = json.dumps(batch.cursor, sort_keys=True)
        if batch.validators:
            state.validators = json.dumps(batch.validators, sort_keys=True)
        state.last_attempt_at = started_at
        state.last_success_at = now
        state.consecutive_failures = 0
        state.last_error = None
        state.not_before = None
        session.add(state)
        session.add(
            PollRun(
                community_id=community.id,
                started_at=started_at,
                finished_at=now,
                outcome="not_modified" if batch.not_modified else "ok",
                new_items=new_items,
                requests=batch.requests,
                covered_from=covered_from,
            )
        )
        change = add_span(session, community_id=community.id, start=covered_from, end=now)
        grace = GRACE_INTERVALS * community.interval
        if change is not None and change.moves_analysis(now=now, grace_seconds=grace):
            mark_changed(session, community_id=community.id)

    @staticmethod
    def _covered_from(batch: Batch, last_success: int | None, started_at: int) -> int:
        """Where this poll's data starts being complete (see ``monitor.analysis.coverage``)."""
        if batch.covered_from is not None:
            return batch.covered_from
        if batch.complete:
            return last_success if last_success is not None else batch.since
        oldest = [e.item.created_at for e in batch.envelopes]
        return min(oldest) if oldest else started_at


def _check_prepared(prepared: Prepared, batch: Batch, existing: Mapping[str, _KnownPost]) -> None:
    """``StalePreparation`` unless every item that needs a score here has one."""
    for envelope in batch.envelopes:
        item = envelope.item
        known = existing.get(item.external_id)
        changed = known is None or (
            known.content_hash != prepared.hashes[item.external_id] and not item.deleted
        )
        if changed and item.external_id not in prepared.scored:
            raise StalePreparation(
                {external_id: post.content_hash for external_id, post in existing.items()}
            )


def ensure_community(session: Session, *, community: CommunityBase, now: int) -> None:
    """The community's row and its empty poll state, created on first sight."""
    source = str(getattr(community, "source", "unknown"))
    # plain SQL, not an ORM load: this runs once per poll
    known = session.execute(
        select(COMMUNITIES.c.source).where(COMMUNITIES.c.id == community.id)
    ).first()
    if known is None:
        session.add(Community(id=community.id, source=source, created_at=now))
        session.add(PollState(community_id=community.id))
        session.flush()
    elif known[0] != source:
        session.execute(
            update(COMMUNITIES).where(COMMUNITIES.c.id == community.id).values(source=source)
        )


def record_failure(
    session: Session,
    *,
    community: CommunityBase,
    reason: str,
    message: str,
    started_at: int,
    now: int,
    requests: int,
    not_before: int | None = None,
) -> PollState:
    """Remember a failed poll (the cursor stays where the last success left it)."""
    ensure_community(session, community=community, now=now)
    state = session.get(PollState, community.id) or PollState(community_id=community.id)
    state.last_attempt_at = started_at
    state.last_error = message[:500]
    state.last_error_at = now
    state.consecutive_failures += 1
    state.not_before = not_before
    session.add(state)
    session.add(
        PollRun(
            community_id=community.id,
            started_at=started_at,
            finished_at=now,
            outcome=reason,
            new_items=0,
            requests=requests,
        )
    )
    return state


def record_backfill(
    session: Session,
    *,
    community_id: str,
    covered_from: int,
    covered_until: int,
    new_items: int,
    requests: int,
) -> None:
    """Remember a finished backfill; the poll cursor is not touched.

    Its data is complete from ``covered_from`` to ``covered_until`` (when it began
    fetching): that span joins the community's coverage, and the run's
    ``started_at``/``finished_at`` are its end.
    """
    session.add(
        PollRun(
            community_id=community_id,
            started_at=covered_until,
            finished_at=covered_until,
            outcome=BACKFILL_OUTCOME,
            new_items=new_items,
            requests=requests,
            covered_from=covered_from,
        )
    )
    change = add_span(session, community_id=community_id, start=covered_from, end=covered_until)
    if change is not None and change.changed:
        mark_changed(session, community_id=community_id)


def load_poll_state(session: Session, community_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cursor and HTTP validators the next poll of ``community_id`` starts from."""
    state = session.get(PollState, community_id)
    if state is None:
        return {}, {}
    return json.loads(state.cursor or "{}"), json.loads(state.validators or "{}")


def polled_communities(session: Session) -> set[str]:
    """The communities a poll was ever attempted for (a start spreads their next polls)."""
    found = session.execute(
        select(POLL_STATES.c.community_id).where(POLL_STATES.c.last_attempt_at.is_not(None))
    )
    return {str(community_id) for (community_id,) in found}
