"""Normalized items -> the store. The only writer of posts.

One call of ``Ingestor.ingest`` handles one poll's ``Batch`` inside the
caller's transaction: authors become keyed pseudonyms, text is scored once,
posts are upserted by (community, external id), threads are updated, and the
poll's new cursor is written next to the items it covers, so that a crash
leaves either all of it or none of it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from monitor.analysis.rollups import day_of
from monitor.analysis.text import KeywordMatcher, sentiment, strip_markup
from monitor.config import CommunityBase, Settings
from monitor.privacy import pseudonym
from monitor.sources.base import Batch, Envelope, Item
from monitor.store.models import Author, Community, PollRun, PollState, Post, Thread

CHUNK = 500
_NOTHING_TO_SCORE = {"", "[deleted]", "[removed]"}
T = TypeVar("T")


def chunked(values: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class IngestResult:
    new_items: int = 0
    updated_items: int = 0
    new_by_kind: Counter[str] = field(default_factory=Counter)
    touched_days: set[int] = field(default_factory=set)


def content_hash(item: Item) -> str:
    parts = (item.title, item.text, str(item.deleted), str(item.edited_at))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def scoring_text(item: Item) -> str:
    text = strip_markup(item.text) if item.text_is_html else item.text
    return f"{item.title}\n{text}".strip() if item.title else text.strip()


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

    def ensure_community(self, session: Session, *, community: CommunityBase, now: int) -> None:
        source = str(getattr(community, "source", "unknown"))
        existing = session.get(Community, community.id)
        if existing is None:
            session.add(Community(id=community.id, source=source, created_at=now))
            session.add(PollState(community_id=community.id))
            session.flush()
        elif existing.source != source:
            existing.source = source
            session.add(existing)

    def ingest(
        self, session: Session, *, community: CommunityBase, batch: Batch, started_at: int, now: int
    ) -> IngestResult:
        """Upsert the batch's items and commit-ready poll state into ``session``."""
        self.ensure_community(session, community=community, now=now)
        result = IngestResult()
        authors, moved_days = self._authors(session, community=community, envelopes=batch.envelopes)
        result.touched_days.update(moved_days)
        existing = self._existing_posts(session, community.id, batch.envelopes)
        new_posts: list[tuple[Post, Item]] = []
        for envelope in batch.envelopes:
            item = envelope.item
            author = authors.get(item.author) if item.author else None
            post = existing.get(item.external_id)
            if post is None:
                post = self._new_post(community, envelope, author)
                session.add(post)
                new_posts.append((post, item))
                result.new_items += 1
                result.new_by_kind[item.kind] += 1
                result.touched_days.add(day_of(item.created_at))
            elif self._update_post(community, post, item, now=now):
                session.add(post)
                result.updated_items += 1
                result.touched_days.add(day_of(post.created_at))
        self._update_threads(session, community.id, new_posts)
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

    def _authors(
        self, session: Session, *, community: CommunityBase, envelopes: Sequence[Envelope]
    ) -> tuple[dict[str, Author], set[int]]:
        """Author rows by source name (the name is only a key here, never stored), and the
        days whose new-participant count changes because an author's first post moved."""
        source = str(getattr(community, "source", ""))
        by_name: dict[str, str] = {}
        span: dict[str, tuple[int, int]] = {}
        for envelope in envelopes:
            name = envelope.item.author
            if not name:
                continue
            alias = by_name.setdefault(
                name, pseudonym(self._key, source=source, community=community.id, name=name)
            )
            created = envelope.item.created_at
            low, high = span.get(alias, (created, created))
            span[alias] = (min(low, created), max(high, created))
        found: dict[str, Author] = {}
        moved_days: set[int] = set()
        aliases = list(span)
        for part in chunked(aliases):
            query = select(Author).where(
                Author.community_id == community.id, col(Author.pseudonym).in_(part)
            )
            for existing in session.exec(query):
                found[existing.pseudonym] = existing
        for alias, (low, high) in span.items():
            row = found.get(alias)
            if row is None:
                row = Author(
                    community_id=community.id, pseudonym=alias, first_seen=low, last_seen=high
                )
                found[alias] = row
            else:
                if low < row.first_seen:
                    moved_days.update((day_of(row.first_seen), day_of(low)))
                    row.first_seen = low
                row.last_seen = max(row.last_seen, high)
            session.add(row)
        session.flush()
        return {name: found[alias] for name, alias in by_name.items()}, moved_days

    def _existing_posts(
        self, session: Session, community_id: str, envelopes: Sequence[Envelope]
    ) -> dict[str, Post]:
        ids = [e.item.external_id for e in envelopes]
        posts: dict[str, Post] = {}
        for part in chunked(ids):
            query = select(Post).where(
                Post.community_id == community_id, col(Post.external_id).in_(part)
            )
            for row in session.exec(query):
                posts[row.external_id] = row
        return posts

    def _score(self, community: CommunityBase, item: Item) -> tuple[float | None, str, str]:
        text = scoring_text(item)
        if text in _NOTHING_TO_SCORE:
            return None, "", ""  # nothing left to score; the post still counts as activity
        groups = ",".join(self._matcher(community).groups_in(text))
        return sentiment(text), groups, text

    def _new_post(
        self, community: CommunityBase, envelope: Envelope, author: Author | None
    ) -> Post:
        item = envelope.item
        score, groups, text = self._score(community, item)
        keep_body = self._settings.store_bodies and bool(text)
        return Post(
            community_id=community.id,
            external_id=item.external_id,
            thread_external_id=item.thread_id,
            parent_external_id=item.parent_id,
            kind=item.kind,
            author_id=author.id if author else None,
            created_at=item.created_at,
            edited_at=item.edited_at,
            deleted=item.deleted,
            sentiment=score,
            keyword_groups=groups,
            content_hash=content_hash(item),
            url=item.url,
            body=text if keep_body else None,
            body_expires_at=(
                envelope.fetched_at + self._settings.retention_days * 86400 if keep_body else None
            ),
            fetched_at=envelope.fetched_at,
        )

    def _update_post(self, community: CommunityBase, post: Post, item: Item, *, now: int) -> bool:
        """Apply an edit or a deletion; False when the item is unchanged."""
        digest = content_hash(item)
        if digest == post.content_hash:
            return False
        post.content_hash = digest
        if item.deleted:
            post.deleted = True  # keep the score it had while it was readable
            post.body = None
            post.body_expires_at = None
            return True
        post.edited_at = item.edited_at or now
        score, groups, text = self._score(community, item)
        post.sentiment, post.keyword_groups = score, groups
        if post.body is not None:
            post.body = text
        return True

    def _update_threads(
        self, session: Session, community_id: str, new_posts: Sequence[tuple[Post, Item]]
    ) -> None:
        if not new_posts:
            return
        wanted = sorted({item.thread_id for _, item in new_posts})
        threads: dict[str, Thread] = {}
        for part in chunked(wanted):
            query = select(Thread).where(
                Thread.community_id == community_id, col(Thread.external_id).in_(part)
            )
            for row in session.exec(query):
                threads[row.external_id] = row
        for post, item in new_posts:
            thread = threads.get(item.thread_id)
            if thread is None:
                thread = Thread(community_id=community_id, external_id=item.thread_id)
                threads[item.thread_id] = thread
            if item.kind == "thread":
                thread.created_at = item.created_at
                thread.author_id = post.author_id
            else:
                thread.reply_count += 1
                if thread.first_reply_at is None or item.created_at < thread.first_reply_at:
                    thread.first_reply_at = item.created_at
            if thread.last_activity_at is None or item.created_at > thread.last_activity_at:
                thread.last_activity_at = item.created_at
            session.add(thread)

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

    @staticmethod
    def _covered_from(batch: Batch, last_success: int | None, started_at: int) -> int:
        """Where this poll's data starts being complete (see ``monitor.analysis.coverage``)."""
        if batch.complete:
            return last_success if last_success is not None else batch.since
        oldest = [e.item.created_at for e in batch.envelopes]
        return min(oldest) if oldest else started_at


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
    if session.get(Community, community.id) is None:
        session.add(
            Community(id=community.id, source=str(getattr(community, "source", "")), created_at=now)
        )
        session.flush()
    state = session.get(PollState, community.id)
    if state is None:
        state = PollState(community_id=community.id)
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


def load_poll_state(session: Session, community_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cursor and HTTP validators the next poll of ``community_id`` starts from."""
    state = session.get(PollState, community_id)
    if state is None:
        return {}, {}
    return json.loads(state.cursor or "{}"), json.loads(state.validators or "{}")
