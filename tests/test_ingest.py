"""Ingest: idempotent upserts, edits and deletions, privacy of authors and bodies, and the
poll's items, cursor and poll run committed together or not at all."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from monitor.analysis.rollups import day_of
from monitor.analysis.windows import window_activity
from monitor.config import Settings
from monitor.ingest import Ingestor, IngestResult, load_poll_state
from monitor.privacy import pseudonym
from monitor.sources.base import Item
from monitor.store import db
from monitor.store.models import Author, PollRun, PollState, Post, Thread
from tests.analysis import fixture as fx

NOW = fx.NOW
DAY = fx.DAY
# Distinctive names and texts, so that a stray copy in the database file cannot be missed.
ALICE = "Alice_Zebediah_Quux"
BOB = "Bob_Xanthippe_Vorn"
THREAD_TEXT = "Unmistakable thread body about the rate, plainly awful"
REPLY_TEXT = "Distinctive reply text, thanks, this is great"


def thread(created: int = NOW - 3 * 3600, **changes: Any) -> Item:
    base = Item(
        external_id="t1",
        kind="thread",
        thread_id="t1",
        created_at=created,
        author=ALICE,
        title="Weekly thread",
        text=THREAD_TEXT,
        url="https://www.reddit.com/r/gigwork/comments/t1/",
    )
    return replace(base, **changes)


def reply(external_id: str = "c1", created: int = NOW - 2 * 3600, **changes: Any) -> Item:
    base = Item(
        external_id=external_id,
        kind="reply",
        thread_id="t1",
        parent_id="t1",
        created_at=created,
        author=BOB,
        text=REPLY_TEXT,
    )
    return replace(base, **changes)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = fx.make_store(tmp_path)
    yield engine
    engine.dispose()


def run(
    engine: Engine,
    items: list[Item],
    *,
    now: int = NOW,
    settings: Settings | None = None,
    community: str = "gig",
    cursor: dict[str, object] | None = None,
    fetched_at: int | None = None,
) -> IngestResult:
    settings = settings or fx.settings()
    with db.session_scope(engine) as session:
        return Ingestor(settings=settings, key=fx.KEY).ingest(
            session,
            community=fx.community(settings, community),
            batch=fx.batch(
                community, items, fetched_at=fetched_at or now, since=now - DAY, cursor=cursor
            ),
            started_at=now - 5,
            now=now,
        )


def count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def post(engine: Engine, external_id: str, community: str = "gig") -> Post:
    with Session(engine) as session:
        return session.exec(
            select(Post).where(Post.community_id == community, Post.external_id == external_id)
        ).one()


def test_reingesting_the_same_batch_changes_nothing(engine: Engine) -> None:
    items = [thread(), reply("c1"), reply("c2", created=NOW - 3600, author=ALICE)]
    first = run(engine, items)
    assert (first.new_items, first.updated_items) == (3, 0)
    assert first.new_by_kind == Counter({"thread": 1, "reply": 2})
    assert first.touched_days == {fx.TODAY}
    with Session(engine) as session:
        rows_before = [p.model_dump() for p in session.exec(select(Post).order_by(col(Post.id)))]
        threads_before = [t.model_dump() for t in session.exec(select(Thread))]
        authors_before = [a.model_dump() for a in session.exec(select(Author))]

    again = run(engine, items, now=NOW + 60)
    assert (again.new_items, again.updated_items) == (0, 0)
    assert again.touched_days == set()
    assert not again.new_by_kind
    with Session(engine) as session:
        assert [p.model_dump() for p in session.exec(select(Post).order_by(col(Post.id)))] == (
            rows_before
        )
        assert [t.model_dump() for t in session.exec(select(Thread))] == threads_before
        assert [a.model_dump() for a in session.exec(select(Author))] == authors_before
    assert threads_before[0]["reply_count"] == 2
    assert count(engine, PollRun) == 2  # the poll itself happened twice


def test_an_edit_rescores_the_post(engine: Engine) -> None:
    run(engine, [thread(), reply("c1")])
    before = post(engine, "c1")
    assert before.sentiment == pytest.approx(0.7906)  # "..., thanks, this is great"
    assert before.edited_at is None
    edited = reply("c1", text="This is awful", edited_at=NOW + 100)
    result = run(engine, [edited], now=NOW + 600)
    assert (result.new_items, result.updated_items) == (0, 1)
    assert result.touched_days == {day_of(before.created_at)}
    after = post(engine, "c1")
    assert after.sentiment == pytest.approx(-0.4588)
    assert after.edited_at == NOW + 100
    assert after.content_hash != before.content_hash
    assert after.id == before.id and count(engine, Post) == 2
    # an edit the source does not timestamp is dated by the poll that saw it
    run(engine, [replace(edited, text="Same here", edited_at=None)], now=NOW + 900)
    again = post(engine, "c1")
    assert (again.sentiment, again.edited_at) == (0.0, NOW + 900)


def test_an_edit_updates_keyword_groups(engine: Engine) -> None:
    run(engine, [thread(text="")])
    assert post(engine, "t1").keyword_groups == ""
    run(engine, [thread(text="another pay cut")], now=NOW + 60)
    assert post(engine, "t1").keyword_groups == "pay"


def test_a_deletion_marks_the_post_and_it_still_counts(engine: Engine) -> None:
    settings = fx.settings(store_bodies=True)
    run(engine, [thread(), reply("c1")], settings=settings)
    before = post(engine, "c1")
    assert before.body == REPLY_TEXT
    gone = reply("c1", author=None, text="[deleted]", deleted=True)
    result = run(engine, [gone], now=NOW + 600, settings=settings)
    assert (result.new_items, result.updated_items) == (0, 1)
    after = post(engine, "c1")
    assert after.deleted is True
    assert after.body is None and after.body_expires_at is None
    # ingest keeps the score the post had while it was readable, and its author
    assert after.sentiment == before.sentiment
    assert after.author_id == before.author_id
    with Session(engine) as session:
        activity = window_activity(
            session, community_id="gig", seconds=DAY, now=NOW + 600, keyword_groups=[]
        )
        assert session.get(Thread, 1) is not None
        assert session.exec(select(Thread.reply_count)).one() == 1
    assert activity.posts == 2


def test_a_post_first_seen_deleted_has_no_author_and_no_score(engine: Engine) -> None:
    run(engine, [thread(), reply("c1", author=None, text="[deleted]", deleted=True)])
    gone = post(engine, "c1")
    assert (gone.deleted, gone.author_id, gone.sentiment, gone.keyword_groups) == (
        True,
        None,
        None,
        "",
    )
    assert count(engine, Author) == 1  # only Alice


def _database_bytes(directory: Path) -> bytes:
    files = sorted(p for p in directory.iterdir() if p.name.startswith("forum.db"))
    assert files, "no database file"
    return b"".join(p.read_bytes() for p in files)


def test_authors_are_stored_only_as_keyed_pseudonyms(tmp_path: Path) -> None:
    engine = fx.make_store(tmp_path)
    try:
        run(engine, [thread(), reply("c1")])
        run(engine, [thread(), reply("c1")], community="rival")
        with Session(engine) as session:
            stored = {(a.community_id, a.pseudonym) for a in session.exec(select(Author))}
    finally:
        engine.dispose()
    expected = {
        (community, pseudonym(fx.KEY, source=fx.SOURCES[community], community=community, name=n))
        for community in ("gig", "rival")
        for n in (ALICE, BOB)
    }
    assert stored == expected
    assert len({alias for _, alias in stored}) == 4  # unlinkable across communities
    raw = _database_bytes(tmp_path)
    for secret in (ALICE, BOB, THREAD_TEXT, REPLY_TEXT, "Zebediah", "Xanthippe"):
        assert secret.encode() not in raw, secret
        assert secret.lower().encode() not in raw.lower(), secret


def test_bodies_are_not_kept_by_default(engine: Engine) -> None:
    run(engine, [thread(), reply("c1")])
    for external_id in ("t1", "c1"):
        found = post(engine, external_id)
        assert (found.body, found.body_expires_at) == (None, None)
        assert found.sentiment is not None  # scored all the same


def test_bodies_are_kept_with_a_retention_when_asked(engine: Engine) -> None:
    settings = fx.settings(store_bodies=True, retention_days=7)
    fetched = NOW - 30
    run(engine, [thread(), reply("c1")], settings=settings, fetched_at=fetched)
    started = post(engine, "t1")
    assert started.body == f"Weekly thread\n{THREAD_TEXT}"
    assert started.body_expires_at == fetched + 7 * 86400
    answered = post(engine, "c1")
    assert answered.body == REPLY_TEXT
    assert answered.body_expires_at == fetched + 7 * 86400
    assert answered.fetched_at == fetched


def _broken_text(item: Item) -> Item:
    return replace(item, text=None)  # type: ignore[arg-type]  # not a str: scoring fails


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        # fails while the batch is prepared (hashed and scored), before anything is written
        (lambda: [reply("c2"), _broken_text(reply("c3")), reply("c4")], TypeError),
        # fails at the final flush, after threads and poll state were written
        (lambda: [reply("c2"), reply("c3"), reply("c3", text="Same here")], IntegrityError),
    ],
    ids=["bad-item", "duplicate-id"],
)
def test_a_failing_ingest_commits_nothing(
    engine: Engine, broken: Any, error: type[Exception]
) -> None:
    run(engine, [thread(), reply("c1")], cursor={"after": "c1"})
    with Session(engine) as session:
        state_before = session.get(PollState, "gig")
        assert state_before is not None
        state_before_dump = state_before.model_dump()
    counts_before = {m: count(engine, m) for m in (Post, Author, Thread, PollRun)}
    with pytest.raises(error):
        run(
            engine,
            [*broken(), reply("c5", author="Carol_New")],
            now=NOW + 600,
            cursor={"after": "c5"},
        )
    assert {m: count(engine, m) for m in (Post, Author, Thread, PollRun)} == counts_before
    with Session(engine) as session:
        state = session.get(PollState, "gig")
        assert state is not None and state.model_dump() == state_before_dump
        assert json.loads(state.cursor) == {"after": "c1"}
        assert load_poll_state(session, "gig")[0] == {"after": "c1"}
        assert session.exec(select(Thread.reply_count)).one() == 1


def test_cursor_and_poll_run_are_written_with_the_items(engine: Engine) -> None:
    result = run(engine, [thread(), reply("c1")], cursor={"after": "c1"})
    with Session(engine) as session:
        cursor, validators = load_poll_state(session, "gig")
        assert (cursor, validators) == ({"after": "c1"}, {})
        state = session.get(PollState, "gig")
        assert state is not None
        assert (state.last_success_at, state.last_attempt_at) == (NOW, NOW - 5)
        assert state.consecutive_failures == 0
        runs = session.exec(select(PollRun)).all()
    assert [(r.outcome, r.new_items, r.started_at, r.finished_at) for r in runs] == [
        ("ok", result.new_items, NOW - 5, NOW)
    ]
    assert runs[0].covered_from == NOW - DAY  # a first poll covers back to its ``since``


def test_a_reply_before_its_thread_start_is_joined_later(engine: Engine) -> None:
    # a reply can arrive in an earlier poll than the thread start it answers
    run(engine, [reply("c1")])
    with Session(engine) as session:
        early = session.exec(select(Thread)).one()
        assert (early.created_at, early.reply_count) == (None, 1)
    run(engine, [thread()], now=NOW + 60)
    with Session(engine) as session:
        joined = session.exec(select(Thread)).one()
        alice = session.exec(select(Author).where(Author.first_seen == NOW - 3 * 3600)).one()
    assert (joined.created_at, joined.reply_count, joined.first_reply_at) == (
        NOW - 3 * 3600,
        1,
        NOW - 2 * 3600,
    )
    assert joined.author_id == alice.id
