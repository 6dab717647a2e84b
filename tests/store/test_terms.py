"""Term counts in the store: ingest stages uses, settling keeps only k-author terms, the SQL
rule equals the pure one, open days count before they close, and old counts are purged.
On SQLite and on a real PostgreSQL."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from monitor.analysis.snapshot import compute_snapshot
from monitor.author_pool import pooled_counts
from monitor.config import Settings
from monitor.ingest import Ingestor
from monitor.sources.base import Item
from monitor.store import db, retention
from monitor.store import terms as term_store
from tests.analysis import fixture as fx
from tests.support import report_section

DAY = fx.DAY
NOW = fx.NOW
TODAY = fx.TODAY


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        built = fx.make_store(tmp_path)
    else:
        built = fx.make_store(url=request.getfixturevalue("pg_url"))
    yield built
    built.dispose()


def _post(number: int, author: str, when: int, body: str) -> Item:
    return Item(
        external_id=f"p{number}",
        kind="thread",
        thread_id=f"p{number}",
        created_at=when,
        author=author,
        title="",
        text=body,
    )


def _ingest(engine: Engine, settings: Settings, items: list[Item], *, now: int = NOW) -> None:
    fx.ingest(engine, Ingestor(settings=settings, key=fx.KEY), settings, "gig", items, now=now)


def _settle(engine: Engine, settings: Settings, *, now: int) -> tuple[int, int]:
    with db.session_scope(engine) as session:
        return retention.settle_terms(session, settings=settings, now=now)


def _kept(engine: Engine) -> dict[tuple[int, str], tuple[int, int]]:
    with Session(engine) as session:
        rows = session.execute(text("SELECT day, term, posts, authors FROM term_counts"))
        return {(int(d), str(t)): (int(p), int(a)) for d, t, p, a in rows}


def _staged(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(text("SELECT COUNT(*) FROM term_days")).scalar_one())


def test_only_terms_of_k_authors_are_kept(engine: Engine) -> None:
    settings = fx.settings()  # k = 5, pool 7 days: a day settles 7 days after it
    day = TODAY - 10 * DAY
    items = [_post(i, f"author{i}", day + 3600 * i, "Onboarding queue broken") for i in range(5)]
    items += [_post(10 + i, "Loner_Qwerty", day + 600 * i, "zanzibar secret") for i in range(3)]
    items += [_post(20 + i, f"other{i}", day + 900 * i, "four people") for i in range(4)]
    items.append(_post(30, "author0", day + 7200, "only onboarding"))
    _ingest(engine, settings, items)
    assert _kept(engine) == {}  # nothing is kept before the day settles
    folded, _ = _settle(engine, settings, now=NOW)
    assert folded == 1
    assert _kept(engine) == {
        (day, "onboarding"): (6, 5),
        (day, "queue"): (5, 5),
        (day, "broken"): (5, 5),
        (day, "onboarding queue"): (5, 5),
        (day, "queue broken"): (5, 5),
    }
    # "zanzibar secret" (one author, 3 posts) and "four people" (4 authors) are gone for good
    # once no open day's pool needs their day
    _settle(engine, settings, now=NOW + 10 * DAY)
    assert _staged(engine) == 0
    with Session(engine) as session:
        stored = session.execute(text("SELECT term FROM term_counts")).scalars().all()
    assert not {"zanzibar", "secret", "four", "people", "only"} & set(stored)


def test_a_late_post_adds_to_a_settled_day(engine: Engine) -> None:
    settings = fx.settings()
    day = TODAY - 8 * DAY
    _ingest(engine, settings, [_post(i, f"a{i}", day + 60 * i, "pay cut") for i in range(5)])
    _settle(engine, settings, now=NOW)
    _ingest(engine, settings, [_post(9, "late_one", day + 5000, "pay cut again")])
    _settle(engine, settings, now=NOW + 3600)
    kept = _kept(engine)
    assert kept[(day, "pay cut")] == (6, 6)
    assert (day, "again") not in kept
    # settling again folds nothing twice
    _settle(engine, settings, now=NOW + 7200)
    assert _kept(engine) == kept


def test_open_days_count_before_they_settle(engine: Engine) -> None:
    settings = fx.settings()
    items = [_post(i, f"a{i}", TODAY + 60 * i, "rival platform") for i in range(5)]
    items += [_post(10 + i, f"b{i}", TODAY - 20 * DAY + 60 * i, "weekly thread") for i in range(40)]
    _ingest(engine, settings, items)
    _settle(engine, settings, now=NOW)
    with Session(engine) as session:
        days = term_store.daily_term_posts(
            session, community_id="gig", since_day=TODAY - 30 * DAY, k=5, pool_days=7
        )
        snapshot = compute_snapshot(
            session, settings=settings, community=fx.community(settings, "gig"), now=NOW
        )
    assert days[TODAY] == {"rival": 5, "platform": 5, "rival platform": 5}
    assert days[TODAY - 20 * DAY]["weekly thread"] == 40
    rising = [(t.term, t.count) for t in snapshot.rising_terms]
    # recent 5 posts, baseline 40: E = 5 * 0.5 / 40 = 0.0625 for each of the three terms;
    # the phrase holds every use of its two words, so it stands for them
    assert rising == [("rival platform", 5)]
    assert round(snapshot.rising_terms[0].score, 4) == round(5 * 4.382026634673881 - 4.9375, 4)


def record_uses(
    session: Session,
    *,
    community_id: str,
    uses: Mapping[tuple[int, str], tuple[int, AbstractSet[int]]],
) -> None:
    """The reference ``record_posts`` is checked against: stage ``uses`` ((day, term) ->
    posts and their authors' ids, built by the test) through the store's own upsert, one
    row per (day, term) keeping any ``AUTHOR_ENTRIES`` of the ids."""
    rows = []
    for (day, term), (posts, authors) in sorted(uses.items()):
        kept = list(islice(authors, term_store.AUTHOR_ENTRIES))
        rows.append((community_id, day, term, posts, ",".join(map(str, kept)), len(kept)))
    term_store._stage(session, rows)


def test_the_store_applies_the_pure_rule(engine: Engine) -> None:
    """Uses staged in several polls (an author may repeat across them) give the counts the
    pure rule gives on the same uses."""
    chance = random.Random(7)
    words = [f"w{chr(97 + i)}" for i in range(6)]
    days: dict[int, dict[str, tuple[int, set[str]]]] = {}
    with db.session_scope(engine) as session:
        session.execute(
            text("INSERT INTO communities (id, source, created_at) VALUES ('gig', 'reddit', 0)")
        )
        for author in range(1, 9):
            session.execute(
                text(
                    "INSERT INTO authors (id, community_id, pseudonym, first_seen, last_seen) "
                    "VALUES (:i, 'gig', :p, 0, 0)"
                ),
                {"i": author, "p": f"p{author}"},
            )
    for _poll in range(6):
        uses: dict[tuple[int, str], tuple[int, set[int]]] = {}
        for _ in range(50):
            day = TODAY - chance.randrange(6) * DAY
            word = chance.choice(words)
            author = chance.randrange(1, 9)
            posts, authors = uses.get((day, word)) or (0, set())
            uses[(day, word)] = (posts + 1, authors | {author})
            posts, names = days.setdefault(day, {}).get(word) or (0, set())
            days[day][word] = (posts + 1, names | {str(author)})
        with db.session_scope(engine) as session:
            record_uses(session, community_id="gig", uses=uses)
    every_day = list(range(TODAY - 5 * DAY, TODAY + DAY, DAY))
    with Session(engine) as session:
        for k, pool in ((3, 1), (6, 2), (8, 3), (8, 6)):
            found = term_store.pending_counts(
                session, community_id="gig", days=every_day, k=k, pool_days=pool
            )
            for day in every_day:
                assert found[day] == pooled_counts(days, day=day, k=k, pool_days=pool)
            assert any(found.values())


def _staging_rows(engine: Engine) -> dict[tuple[int, str], tuple[int, list[str], int]]:
    with Session(engine) as session:
        rows = session.execute(
            text("SELECT day, term, pending, authors, author_entries FROM term_days")
        )
        return {(int(d), str(t)): (int(p), str(a).split(","), int(n)) for d, t, p, a, n in rows}


def test_staging_posts_stages_their_uses(engine: Engine, tmp_path: Path) -> None:
    """``record_posts`` (ingest's path: posts straight to rows) stages what ``record_uses``
    stages for the same posts' uses, over polls that repeat days, terms and authors; a row
    keeps AUTHOR_ENTRIES distinct ids once more authors used its term."""
    chance = random.Random(11)
    words = [f"w{chr(97 + i)}" for i in range(8)]
    polls = []
    for poll in range(4):
        posts = []
        for _ in range(60):
            day = TODAY - chance.randrange(3) * DAY
            terms = frozenset(chance.sample(words, chance.randint(0, 4)))
            posts.append((day, chance.randrange(1, 12), terms))
        # "crowd": 50 new authors a poll; "throng": 70 authors in the first poll alone
        posts += [(TODAY, 1000 + 50 * poll + n, frozenset({"crowd"})) for n in range(50)]
        posts += [(TODAY, 2000 + n, frozenset({"throng"})) for n in range(70 if poll == 0 else 0)]
        polls.append(posts)
    other = fx.make_store(tmp_path / "by-uses") if engine.dialect.name == "sqlite" else None
    for target in (engine, other):
        if target is None:
            continue
        with db.session_scope(target) as session:
            session.execute(
                text("INSERT INTO communities (id, source, created_at) VALUES ('gig', 'reddit', 0)")
            )
    by_uses: dict[tuple[int, str], tuple[int, set[int]]] = {}
    for posts in polls:
        uses: dict[tuple[int, str], tuple[int, set[int]]] = {}
        for day, author, terms in posts:
            for term in terms:
                count, authors = uses.get((day, term)) or (0, set())
                uses[(day, term)] = (count + 1, authors | {author})
                count, authors = by_uses.get((day, term)) or (0, set())
                by_uses[(day, term)] = (count + 1, authors | {author})
        with db.session_scope(engine) as session:
            term_store.record_posts(session, community_id="gig", posts=posts)
        if other is not None:
            with db.session_scope(other) as session:
                record_uses(session, community_id="gig", uses=uses)
    staged = _staging_rows(engine)
    assert staged.keys() == by_uses.keys()
    for key, (pending, ids, entries) in staged.items():
        posts_of_term, authors = by_uses[key]
        assert pending == posts_of_term, key
        assert entries == len(ids), key
        if key[1] not in ("crowd", "throng"):  # fewer than AUTHOR_ENTRIES authors: all kept
            assert set(ids) == {str(a) for a in authors}, key
    # 50 ids from the first poll and 50 from the second (the row held 50 < 64 before it);
    # the third and fourth polls add posts but no ids: the row is full
    assert staged[(TODAY, "crowd")] == (200, [str(1000 + n) for n in range(100)], 100)
    # 70 distinct authors in one poll: the first 64 are kept
    assert staged[(TODAY, "throng")] == (70, [str(2000 + n) for n in range(64)], 64)
    if other is not None:
        by_record_uses = _staging_rows(other)
        other.dispose()
        assert by_record_uses.keys() == staged.keys()
        for key, (pending, ids, entries) in by_record_uses.items():
            assert (pending, entries) == staged[key][::2], key
            if key[1] != "throng":  # record_uses keeps any 64 of the 70
                assert set(ids) == set(staged[key][1]), key


def test_term_counts_follow_retention_days_unless_set(engine: Engine) -> None:
    old = TODAY - 40 * DAY
    items = [_post(i, f"a{i}", old + 60 * i, "pay cut") for i in range(5)]
    items += [_post(10 + i, f"a{i}", TODAY - 10 * DAY + 60 * i, "pay cut") for i in range(5)]
    default = fx.settings()  # retention_days = 30: counts older than 30 days go
    _ingest(engine, default, items)
    _, expired = _settle(engine, default, now=NOW)
    assert expired == 3
    assert sorted({day for day, _ in _kept(engine)}) == [TODAY - 10 * DAY]

    longer = fx.settings(terms={"retention_days": 60})
    with db.session_scope(engine) as session:
        session.execute(text("DELETE FROM term_counts"))
    later = [_post(40 + i, f"a{i}", old + 90 + i, "pay cut") for i in range(5)]
    _ingest(engine, longer, later)
    _settle(engine, longer, now=NOW)
    assert sorted({day for day, _ in _kept(engine)}) == [old]
    _, expired = _settle(engine, longer, now=NOW + 25 * DAY)
    assert expired == 3 and _kept(engine) == {}


def test_terms_off_stages_nothing(engine: Engine) -> None:
    settings = fx.settings(terms={"enabled": False})
    _ingest(engine, settings, [_post(i, f"a{i}", TODAY + i, "pay cut") for i in range(6)])
    assert _staged(engine) == 0


def test_the_evidence_report_lists_the_periods_rising_terms(tmp_path: Path) -> None:
    """28 baseline days of 10 posts "weekly thread about routes" (10 authors a day), then 7
    days of the same plus 2 posts a day saying "tier change" (14 authors). By hand: recent
    posts 7 x 12 = 84, baseline 28 x 10 = 280; "tier change" 14 posts, none before, so
    expected = 84 x 0.5 / 280 = 0.15 and surprise = 14 ln(14 / 0.15) - (14 - 0.15) = 49.65;
    its words are said by the phrase, and the routine words are common in the baseline."""
    engine = fx.make_store(tmp_path)
    settings = fx.settings(retention_days=60, database_url=f"sqlite:///{tmp_path / 'forum.db'}")
    items: list[Item] = []
    for back in range(35, 0, -1):
        day = TODAY - back * DAY
        items += [
            _post(back * 100 + n, f"regular{n}", day + 3600 * n, "weekly thread about routes")
            for n in range(10)
        ]
        if back <= 7:
            items += [
                _post(back * 100 + 50 + n, f"worker{back}x{n}", day + 1800 + 3600 * n, text)
                for n in range(2)
                for text in ["tier change"]
            ]
    _ingest(engine, settings, items)
    engine.dispose()
    section = report_section(
        settings,
        "gig",
        since=TODAY - 60 * DAY,
        until=TODAY,
        now=NOW,
        workdir=tmp_path,
        section="terms",
    )
    assert section is not None
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>"
                      r"<td>(.*?)</td></tr>", section)  # fmt: skip
    assert rows == [("tier change", "14", "0.0%", "0.1", "49.7")]


def test_the_evidence_report_says_nothing_of_terms_when_they_are_off(tmp_path: Path) -> None:
    engine = fx.make_store(tmp_path)
    settings = fx.settings(
        terms={"enabled": False}, database_url=f"sqlite:///{tmp_path / 'forum.db'}"
    )
    _ingest(engine, settings, [_post(1, "someone", TODAY - 2 * DAY, "tier change")])
    engine.dispose()
    shown = report_section(
        settings,
        "gig",
        since=TODAY - 30 * DAY,
        until=TODAY,
        now=NOW,
        workdir=tmp_path,
        section="terms",
    )
    assert shown is None
