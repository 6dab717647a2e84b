"""Participant flows: departed, moved and shared authors on a hand-counted fixture, through
the real ingest (names to namespace pseudonyms), k-anonymity, and namespaces.

The fixture (``NOW`` fixed; the previous window is [NOW-56d, NOW-28d), the window
[NOW-28d, NOW)); author names are the same strings on every platform on purpose:

reddit ``a``:  u1..u6 at -40d; u9 at -40d and -30d; u7 at -40d and -5d; u8 at -70d;
               u10, u11 at -3d; u20 at -1d
reddit ``b``:  u1, u2, u3 at -10d; u7, u10 at -2d; u20, u21 at -35d
reddit ``c``:  u4 at -1d; u9 at -45d
discourse ``d``: u5, u6 at -1d; u1 at -40d     hackernews ``h``: u1 at -2d
mastodon ``m1`` (one.social): alice, bob@two.social at -40d
mastodon ``m2`` (two.social): bob, alice at -1d
feed ``f``: u1 at -40d, u2 at -1d

By hand, reddit:
- departed(a) = {u1..u6, u9} = 7 (u7 is still active, u8 too old); departed(b) = {u20,
  u21} = 2; departed(c) = {u9} = 1
- active(a) = {u7, u10, u11, u20}; active(b) = {u1, u2, u3, u7, u10}; active(c) = {u4}
- moved(a, b) = {u1, u2, u3} = 3, ratio 3/7; moved(a, c) = {u4} = 1; moved(b, a) = {u20}
  = 1; moved(c, *) = 0 (u9 was last in a at -30d)
- shared(a, b) = shared(b, a) = {u7, u10} = 2; no other pair shares anyone
Mastodon: departed(m1) = {alice@one.social, bob@two.social} = 2; moved(m1, m2) = {bob@two.
social} = 1 (alice of one.social is not alice of two.social).
Discourse ``d`` (u5, u6 at -1d, u1 departed) and Hacker News ``h`` share names with ``a``
but are other platforms: never paired. The feed has no namespace: no flows at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from monitor.analysis.flows import (
    FlowCounts,
    anonymous_flows,
    compute_flows,
    flow_counts,
)
from monitor.config import Settings, settings_from_mapping
from monitor.errors import ConfigError
from monitor.ingest import Ingestor
from monitor.sources import author_namespace
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db
from tests.analysis import fixture as fx
from tests.support import report_section

NOW = fx.NOW
DAY = fx.DAY
KEY = fx.KEY
WINDOW = 28 * DAY

COMMUNITIES = [
    {"id": "a", "source": "reddit", "subreddit": "alpha"},
    {"id": "b", "source": "reddit", "subreddit": "beta", "base_url": "https://old.reddit.com"},
    {"id": "c", "source": "reddit", "subreddit": "gamma"},
    {"id": "d", "source": "discourse", "base_url": "https://forum.example.org"},
    {"id": "h", "source": "hackernews"},
    {"id": "m1", "source": "mastodon", "base_url": "https://one.social", "hashtag": "gig"},
    {"id": "m2", "source": "mastodon", "base_url": "https://Two.Social", "hashtag": "gig"},
    {"id": "f", "source": "rss", "url": "https://blog.example.org/feed.xml"},
]
POSTS: dict[str, list[tuple[str, int]]] = {
    "a": [
        *((f"u{n}", -40) for n in range(1, 7)),
        ("u9", -40),
        ("u9", -30),
        ("u7", -40),
        ("u7", -5),
        ("u8", -70),
        ("u10", -3),
        ("u11", -3),
        ("u20", -1),
    ],
    "b": [("u1", -10), ("u2", -10), ("u3", -10), ("u7", -2), ("u10", -2)]
    + [("u20", -35), ("u21", -35)],
    "c": [("u4", -1), ("u9", -45)],
    "d": [("u5", -1), ("u6", -1), ("u1", -40)],
    "h": [("u1", -2)],
    "m1": [("alice", -40), ("bob@two.social", -40)],
    "m2": [("bob", -1), ("alice", -1)],
    "f": [("u1", -40), ("u2", -1)],
}


def settings(**extra: object) -> Settings:
    return settings_from_mapping(
        {"pseudonym_key": KEY.decode(), "communities": COMMUNITIES, **extra}
    )


def load(engine: Engine, config: Settings, posts: dict[str, list[tuple[str, int]]]) -> None:
    ingestor = Ingestor(settings=config, key=KEY)
    for community in config.communities:
        items = [
            Item(
                external_id=f"{community.id}-{number}",
                kind="thread",
                thread_id=f"{community.id}-{number}",
                created_at=NOW + days * DAY,
                author=name,
                title="Weekly thread",
            )
            for number, (name, days) in enumerate(posts.get(community.id, []))
        ]
        batch = Batch(
            envelopes=[Envelope(community.id, community.source, NOW, i) for i in items],
            cursor={},
            validators={},
            requests=1,
            not_modified=False,
        )
        with db.session_scope(engine) as session:
            ingestor.ingest(session, community=community, batch=batch, started_at=NOW, now=NOW)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = fx.make_store(tmp_path)
    load(engine, settings(), POSTS)
    yield engine
    engine.dispose()


def namespaces(config: Settings) -> dict[str, str | None]:
    return {c.id: author_namespace(c) for c in config.communities}


def test_namespaces_say_where_a_name_is_one_account() -> None:
    found = namespaces(settings())
    assert found["a"] == found["b"] == found["c"] == "reddit"  # old.reddit.com too
    assert found["d"] == "discourse:forum.example.org"
    assert found["h"] == "hackernews"
    assert found["m1"] == found["m2"] == "mastodon"
    assert found["f"] is None


def test_raw_counts_match_the_hand_count(engine: Engine) -> None:
    with Session(engine) as session:
        reddit = flow_counts(session, communities=["a", "b", "c"], now=NOW, seconds=WINDOW)
        mastodon = flow_counts(session, communities=["m1", "m2"], now=NOW, seconds=WINDOW)
    assert reddit.departed == {"a": 7, "b": 2, "c": 1}
    assert reddit.moved == {("a", "b"): 3, ("a", "c"): 1, ("b", "a"): 1}
    assert reddit.shared == {("a", "b"): 2, ("b", "a"): 2}
    assert mastodon.departed == {"m1": 2}
    assert mastodon.moved == {("m1", "m2"): 1}
    assert mastodon.shared == {}


def test_counts_as_they_stood_at_a_past_end(engine: Engine) -> None:
    """Read from the posts: at NOW the same as from each author's latest sighting; 20 days
    earlier, by hand from the fixture (the window [-48d, -20d), the one before it [-76d,
    -48d), later posts unseen): a's u1..u7 and u9 active, u8 (-70d) departed; b's u20,
    u21 (-35d) active; c's u9 (-45d) active. So departed(a) = 1, nobody moved (u8 is
    nowhere later), shared(a, c) = shared(c, a) = {u9} = 1."""
    from monitor.analysis.flows import flow_counts_until

    with Session(engine) as session:
        for ids in (["a", "b", "c"], ["m1", "m2"]):
            present = flow_counts(session, communities=ids, now=NOW, seconds=WINDOW)
            assert flow_counts_until(session, communities=ids, until=NOW + 1, seconds=WINDOW) == (
                present
            )
        past = flow_counts_until(
            session, communities=["a", "b", "c"], until=NOW - 20 * DAY, seconds=WINDOW
        )
    assert past.departed == {"a": 1}
    assert past.moved == {}
    assert past.shared == {("a", "c"): 1, ("c", "a"): 1}


@pytest.mark.postgres
def test_raw_counts_on_postgres(pg_url: str) -> None:
    engine = fx.make_store(url=pg_url)
    try:
        load(engine, settings(), POSTS)
        test_raw_counts_match_the_hand_count(engine)
        test_counts_as_they_stood_at_a_past_end(engine)
    finally:
        engine.dispose()


def test_exported_flows_at_k_2(engine: Engine) -> None:
    with Session(engine) as session:
        flows = compute_flows(session, namespaces=namespaces(settings()), now=NOW, min_authors=2)
    (a,) = flows["a"]
    assert (a.window, a.namespace, a.departed) == ("28d", "reddit", 7)
    by_id = {d.community: d for d in a.destinations}
    # never d or h, which share names with a; and not c: its one mover is below k, and
    # with 7 departed a "0" could be 14 points off, so not even that is claimed
    assert set(by_id) == {"b"}
    assert by_id["b"].ratio == pytest.approx(3 / 7)
    assert (by_id["b"].moved, by_id["b"].shared) == (3, 2)
    (b,) = flows["b"]
    assert b.departed == 2
    # 1 of 2 departed moved to a: below k, withheld; the 2 shared authors are shown
    assert [(d.community, d.ratio, d.moved, d.shared) for d in b.destinations] == [
        ("a", None, None, 2)
    ]
    (c,) = flows["c"]
    assert c.departed is None and c.destinations == ()
    (m1,) = flows["m1"]
    assert m1.departed == 2 and m1.destinations == ()
    for alone in ("d", "h"):
        assert [f.destinations for f in flows[alone]] == [()]
    assert "f" not in flows


def test_same_names_on_other_platforms_never_link(tmp_path: Path) -> None:
    """A community per platform with the very same authors: every namespace is alone."""
    everyone = [(f"person{n}", -40) for n in range(10)] + [(f"person{n}", -1) for n in range(10)]
    config = settings()
    engine = fx.make_store(tmp_path)
    try:
        load(engine, config, {c: everyone for c in ("a", "d", "h", "m1", "f")})
        with Session(engine) as session:
            every = namespaces(config)
            flows = compute_flows(
                session, namespaces={c: every[c] for c in "adh"}, now=NOW, min_authors=2
            )
            across = flow_counts(session, communities=["a", "d", "h"], now=NOW, seconds=WINDOW)
        assert all(f.destinations == () for found in flows.values() for f in found)
        # even forced into one query, their namespace pseudonyms never match
        assert across.moved == {} and across.shared == {}
    finally:
        engine.dispose()


def counts(departed: int, moved: int, shared: int) -> FlowCounts:
    return FlowCounts(
        departed={"x": departed},
        moved={("x", "y"): moved} if moved else {},
        shared={("x", "y"): shared, ("y", "x"): shared} if shared else {},
    )


@pytest.mark.parametrize(
    ("departed", "moved", "shared", "expected"),
    [
        # departed, moved, shared -> (departed shown, ratio, moved shown, shared shown)
        (100, 30, 7, (100, 0.30, 30, 7)),
        (100, 5, 5, (100, 0.05, 5, 5)),
        (100, 4, 4, (100, 0.0, None, None)),  # 4 movers < k: "0", at most 4 points off
        (40, 4, 0, (40, 0.0, None, None)),  # 4/40 = 10 points: still a 0
        (39, 4, 0, (39, None, None, None)),  # 4/39 > 10 points: nothing claimed
        (39, 0, 0, (39, None, None, None)),  # the same: 0 and 4 movers must look alike
        (4, 4, 9, (None, None, None, 9)),  # 4 departed: nothing about them
        (5, 5, 0, (5, 1.0, 5, None)),
    ],
)
def test_nothing_below_k_is_shown(
    departed: int, moved: int, shared: int, expected: tuple[object, ...]
) -> None:
    found = anonymous_flows(
        counts(departed, moved, shared),
        communities=["x", "y"],
        namespace="reddit",
        window="28d",
        min_authors=5,
    )["x"]
    destination = next(iter(found.destinations), None)
    shown = (
        found.departed,
        None if destination is None else destination.ratio,
        None if destination is None else destination.moved,
        None if destination is None else destination.shared,
    )
    assert shown[0] == expected[0]
    assert shown[1] == (pytest.approx(expected[1]) if expected[1] is not None else None)
    assert shown[2:] == expected[2:]


def test_destinations_are_bounded_and_busiest_first() -> None:
    members = ["x", *(f"y{n:02d}" for n in range(30))]
    moved = {("x", f"y{n:02d}"): 5 + n for n in range(30)}
    found = anonymous_flows(
        FlowCounts({"x": 1000}, moved, {}),
        communities=members,
        namespace="reddit",
        window="28d",
        min_authors=5,
    )
    assert [d.community for d in found["x"].destinations] == [
        f"y{n:02d}" for n in range(29, 19, -1)
    ]
    assert found["y00"].departed is None and found["y00"].destinations == ()


def reference_counts(rows: list[tuple[str, str, int]], *, middle: int) -> FlowCounts:
    """Every pair counted with sets, the definitions of the module doc read literally."""
    departed: dict[str, set[str]] = {}
    active: dict[str, set[str]] = {}
    for community, person, seen in rows:
        (active if seen >= middle else departed).setdefault(community, set()).add(person)
    found = FlowCounts({c: len(people) for c, people in departed.items()}, {}, {})
    for a in {*departed, *active}:
        for b in active:
            if a != b:
                if moved := len(departed.get(a, set()) & active[b]):
                    found.moved[(a, b)] = moved
                if shared := len(active.get(a, set()) & active[b]):
                    found.shared[(a, b)] = shared
    return found


@pytest.mark.parametrize("seed", range(6))
def test_sparse_counts_match_sets_and_show_the_same(seed: int) -> None:
    """Random namespaces (some persons in many communities, repeated rows, communities with
    nobody) against ``reference_counts``: the same counts for each community's busiest
    partners, and the very same export as from every pair's counts."""
    import random

    from monitor.analysis.flows import TOP_DESTINATIONS, count_flows

    chance = random.Random(seed)
    members = [f"c{n:02d}" for n in range(chance.randint(2, 40))]
    edges = [WINDOW, 2 * WINDOW, 1]  # the window's edges: seen at its start is active
    rows = [
        (
            chance.choice(members),
            f"p{chance.randrange(60)}",
            NOW - chance.choice([*edges, chance.randrange(2 * WINDOW)] if n % 5 else edges),
        )
        for n in range(chance.randint(0, 900))
    ]
    rows += rows[: len(rows) // 10]  # the same person and community twice
    middle = NOW - WINDOW
    expected = reference_counts(rows, middle=middle)
    everything = count_flows(members, rows, middle=middle, keep=len(members))
    assert everything == expected
    kept = count_flows(members, rows, middle=middle)
    assert kept.departed == expected.departed
    assert kept.moved.items() <= expected.moved.items()
    assert kept.shared.items() <= expected.shared.items()
    assert all(
        sum(1 for pair in {*kept.moved, *kept.shared} if pair[0] == c) <= TOP_DESTINATIONS
        for c in members
    )
    for k in (2, 5):
        shown = dict(namespace="reddit", window="28d", min_authors=k, communities=members)
        assert anonymous_flows(kept, **shown) == anonymous_flows(expected, **shown)  # type: ignore[arg-type]


def test_flow_min_authors_is_validated() -> None:
    for bad in (1, 0, "five"):
        with pytest.raises(ConfigError) as caught:
            settings(flow_min_authors=bad)
        problems = caught.value.problems
        assert len(problems) == 1 and problems[0].startswith("flow_min_authors:"), problems
    assert settings().flow_min_authors == 5


def test_authors_from_before_the_upgrade_join_when_seen_again(tmp_path: Path) -> None:
    """A row without a namespace pseudonym (written before it existed) gets one when its
    author posts again, and only then counts."""
    from sqlalchemy import update

    from monitor.store.models import Author

    config = settings()
    engine = fx.make_store(tmp_path)
    try:
        load(engine, config, {"a": [(f"v{n}", -40) for n in range(6)]})
        with db.session_scope(engine) as session:
            session.execute(update(Author).values(namespace_pseudonym=None))
        with Session(engine) as session:
            assert flow_counts(session, communities=["a"], now=NOW, seconds=WINDOW).departed == {}
        load(engine, config, {"a": [("v0", -39), ("v1", -39)]})
        with Session(engine) as session:
            found = flow_counts(session, communities=["a"], now=NOW, seconds=WINDOW)
        assert found.departed == {"a": 2}
    finally:
        engine.dispose()


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.6])
def test_a_known_share_of_movers_is_measured_within_5_points(share: float) -> None:
    """``bench.flows``' steady profile at 40 posts/day, three seeds: a's leavers of whom
    ``share`` move to b, through the real ingest and the k-anonymous export (k = 5). The
    ratio is within 5 points of the designed share; the control pair (nobody moves, a
    fifth of c's members were always in d) stays within 5 points of that base rate."""
    from bench import flows as simulated

    for seed in simulated.SEEDS:
        found = simulated.trial(share=share, rate=40, seed=seed)
        assert found.measured is not None, found
        assert abs(found.measured - found.truth) <= 0.05, found
        assert abs(found.truth - share) <= 0.01, found  # the design holds
        assert found.control_measured is not None, found
        assert abs(found.control_measured - found.control_truth) <= 0.05, found
        assert 0.1 <= found.control_truth <= 0.3, found


def test_the_exporter_shows_what_k_allows_and_promtool_agrees(engine: Engine) -> None:
    """Through the snapshots and the collector, as /metrics serves them (k = 2)."""
    import shutil
    import subprocess

    from prometheus_client import CollectorRegistry

    from monitor.analysis.snapshot import Snapshots
    from monitor.exporter import CommunityCollector

    config = settings(flow_min_authors=2)
    snapshots = Snapshots(settings=config, engine=engine)
    collector = CommunityCollector(snapshots)
    registry = CollectorRegistry()
    registry.register(collector)
    snapshots.refresh_flows(namespaces=namespaces(config), now=NOW)
    for community in config.communities:
        snapshots.refresh(community, now=NOW)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"window": "28d", **labels})

    assert value("forum_departed_participants", community="a") == 7
    assert value("forum_departed_participants", community="b") == 2
    assert value("forum_departed_participants", community="c") is None  # 1 < k
    assert value("forum_participant_flow_ratio", community="a", to_community="b") == 3 / 7
    assert value("forum_participant_flow_ratio", community="a", to_community="c") is None
    assert value("forum_participants_shared", community="a", to_community="b") == 2
    assert value("forum_participants_shared", community="b", to_community="a") == 2
    text = collector.exposition().decode()
    pairs = {
        (line.split('community="')[1].split('"')[0], line.split('to_community="')[1].split('"')[0])
        for line in text.splitlines()
        if "to_community=" in line and not line.startswith("#")
    }
    assert pairs == {("a", "b"), ("b", "a")}
    for name in ("u1", "alice", "bob"):  # no name, ever, in a label
        assert f'"{name}' not in text
    promtool = shutil.which("promtool")
    if promtool is not None:
        check = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr


def test_namespace_pseudonyms_link_one_account_and_nothing_else() -> None:
    from monitor.privacy import namespace_pseudonym, pseudonym

    same = namespace_pseudonym(KEY, namespace="reddit", name="u1")
    assert same == namespace_pseudonym(KEY, namespace="reddit", name="u1")
    assert same != namespace_pseudonym(KEY, namespace="hackernews", name="u1")
    assert same != namespace_pseudonym(
        b"another-key-0123456789abcdefghij", namespace="reddit", name="u1"
    )
    assert same not in {
        pseudonym(KEY, source="reddit", community=c, name="u1") for c in ("a", "b", "reddit")
    }
    # they would for a source kind "namespace": there is none, so they never coincide
    assert pseudonym(KEY, source="namespace", community="reddit", name="u1") == same
    from monitor.config import SOURCE_KINDS

    assert "namespace" not in SOURCE_KINDS


def flows_of(workdir: Path) -> dict[str, Any]:
    """``report_section``'s other arguments for these tests' flows section."""
    return {"now": NOW, "workdir": workdir, "section": "flows"}


def test_the_evidence_report_shows_where_departed_participants_went(tmp_path: Path) -> None:
    """The hand count above at k = 2, as the report's section prints it: 7 departed from a,
    3 of them (43 %) active in b, 2 authors active in both; nothing about d or h."""
    engine = fx.make_store(tmp_path)
    config = settings(flow_min_authors=2, database_url=f"sqlite:///{tmp_path / 'forum.db'}")
    load(engine, config, POSTS)
    engine.dispose()
    text = report_section(
        config, "a", since=NOW - 60 * DAY - NOW % DAY, until=NOW - NOW % DAY, **flows_of(tmp_path)
    )
    assert text is not None
    assert "<p>7 participants departed.</p>" in text
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", text)
    assert rows == [("b", "43%", "3", "2")]
    assert "fewer than 2 authors" in text


def test_the_evidence_report_counts_flows_at_the_end_of_its_period(tmp_path: Path) -> None:
    """A period ending two days before NOW: its flows are those of the 28 days before its
    end (k = 2), not the present's. b's u20 and u21 (-35d) departed; u20 posted in a at
    -1d, after the end, and the authors b shares with a (u7, u10) posted in b at -2d, after
    it too: so no destination, where the present shows a (shared 2, as in
    ``test_exported_flows_at_k_2``)."""
    engine = fx.make_store(tmp_path)
    config = settings(flow_min_authors=2, database_url=f"sqlite:///{tmp_path / 'forum.db'}")
    load(engine, config, POSTS)
    engine.dispose()
    end = NOW - NOW % DAY - 2 * DAY
    text = report_section(config, "b", since=end - 30 * DAY, until=end, **flows_of(tmp_path))
    assert text is not None
    first, last = (
        time.strftime("%Y-%m-%d", time.gmtime(end - 28 * DAY)),
        time.strftime("%Y-%m-%d", time.gmtime(end - 1)),
    )
    assert f"({first} to {last})" in text
    assert "<p>2 participants departed.</p>" in text
    assert "No watched community of the same platform received any of them." in text


def test_the_evidence_report_of_a_feed_says_nothing_of_flows(tmp_path: Path) -> None:
    engine = fx.make_store(tmp_path)
    config = settings(database_url=f"sqlite:///{tmp_path / 'forum.db'}")
    load(engine, config, POSTS)
    engine.dispose()
    shown = report_section(
        config, "f", since=NOW - 60 * DAY - NOW % DAY, until=NOW - NOW % DAY, **flows_of(tmp_path)
    )
    assert shown is None
