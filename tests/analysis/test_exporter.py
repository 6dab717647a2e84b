"""The community collector over snapshots of the fixture: values, absences and labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine
from sqlmodel import Session, select

from monitor.analysis.snapshot import Snapshots
from monitor.exporter import CommunityCollector
from monitor.store.models import Author, Post
from tests.analysis import fixture as fx
from tests.analysis.fixture import NOW, at

ALLOWED_LABELS = {"community", "source", "window", "keyword_group", "signal", "term"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Snapshots]]:
    engine, settings = fx.build(Path(tmp_path_factory.mktemp("exporter")))
    snapshots = Snapshots(settings=settings, engine=engine)
    for community in settings.communities:
        snapshots.refresh(community, now=NOW)
    yield engine, snapshots
    engine.dispose()


@pytest.fixture
def registry(built: tuple[Engine, Snapshots]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CommunityCollector(built[1]))
    return registry


def labels(community: str, window: str | None = None, **extra: str) -> dict[str, str]:
    found = {"community": community, "source": fx.SOURCES[community], **extra}
    if window is not None:
        found["window"] = window
    return found


@pytest.mark.parametrize(
    ("metric", "series", "expected"),
    [
        # see tests/analysis/test_windows.py for the derivations
        ("forum_posts", labels("gig", "28d"), 11),  # g5 .. g9, the deleted reply included
        ("forum_posts", labels("rival", "7d"), 14),
        ("forum_posts", labels("steady", "1d"), 3),  # s9 (at the window start), s10, s8r3
        ("forum_threads_started", labels("gig", "1d"), 1),
        ("forum_active_participants", labels("rival", "28d"), 9),
        ("forum_new_participants", labels("rival", "7d"), 5),
        ("forum_returning_participants_ratio", labels("gig", "28d"), 3 / 5),
        ("forum_thread_participants_avg", labels("steady", "28d"), 10 / 6),
        ("forum_thread_replies_avg", labels("gig", "7d"), 4 / 3),
        # judged on threads started in [-2 12:00, -1 12:00): g8, answered
        ("forum_unanswered_threads_ratio", labels("gig", "1d"), 0.0),
        ("forum_first_reply_median_seconds", labels("rival", "28d"), 10800.0),
        ("forum_first_reply_median_seconds", labels("gig", "7d"), (3600 + 64800) / 2),
        ("forum_sentiment_mean", labels("gig", "7d"), (-0.3412 - 0.4588) / 6),
        ("forum_sentiment_negative_ratio", labels("steady", "28d"), 1 / 11),
        ("forum_keyword_posts", labels("gig", "28d", keyword_group="pay"), 3),
        ("forum_keyword_posts", labels("gig", "1d", keyword_group="pay"), 0),
        ("forum_keyword_posts", labels("gig", "7d", keyword_group="leave"), 2),
        (
            "forum_keyword_sentiment_mean",
            labels("gig", "28d", keyword_group="pay"),
            (-0.3612 - 0.4588 - 0.3412) / 3,
        ),
        ("forum_coverage_ratio", labels("gig", "28d"), 1.0),
        ("forum_coverage_ratio", labels("steady", "1d"), 1.0),
        ("forum_last_post_timestamp_seconds", labels("gig"), at(0, "06:00")),  # g9
        ("forum_last_post_timestamp_seconds", labels("rival"), at(0, "09:00")),  # r6r2
        ("forum_last_post_timestamp_seconds", labels("steady"), at(0, "11:00")),  # s8r3
    ],
)
def test_sample_values(
    registry: CollectorRegistry, metric: str, series: dict[str, str], expected: float
) -> None:
    assert registry.get_sample_value(metric, series) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("metric", "series"),
    [
        # no steady thread started in [-2 12:00, -1 12:00): nothing to judge
        ("forum_unanswered_threads_ratio", labels("steady", "1d")),
        ("forum_first_reply_median_seconds", labels("gig", "1d")),  # g9 has no reply
        ("forum_first_reply_median_seconds", labels("steady", "1d")),
        ("forum_returning_participants_ratio", labels("steady", "1d")),  # nobody the day before
        ("forum_keyword_sentiment_mean", labels("gig", "1d", keyword_group="pay")),  # 0 posts
        ("forum_keyword_sentiment_mean", labels("steady", "28d", keyword_group="leave")),
        ("forum_activity_change_ratio", labels("gig", "28d", signal="posts")),  # no trends
    ],
)
def test_undefined_values_are_absent(
    registry: CollectorRegistry, metric: str, series: dict[str, str]
) -> None:
    assert registry.get_sample_value(metric, series) is None


def test_every_window_gauge_has_one_series_per_community_and_window(
    registry: CollectorRegistry,
) -> None:
    families = {family.name: family for family in registry.collect()}
    series = {
        (s.labels["community"], s.labels["source"], s.labels["window"])
        for s in families["forum_posts"].samples
    }
    assert series == {(c, fx.SOURCES[c], w) for c in fx.POSTS for w in ("1d", "7d", "28d")}
    assert len(families["forum_posts"].samples) == 9
    # 3 communities x 3 windows x 2 groups, zero counts included
    assert len(families["forum_keyword_posts"].samples) == 18
    # undefined: gig 1d, rival 1d (grace) -> 7 of 9
    assert len(families["forum_unanswered_threads_ratio"].samples) == 8


def test_no_label_names_a_person_thread_or_post(
    registry: CollectorRegistry, built: tuple[Engine, Snapshots]
) -> None:
    with Session(built[0]) as session:
        pseudonyms = set(session.exec(select(Author.pseudonym)).all())
        ids = set(session.exec(select(Post.external_id)).all())
        ids |= set(session.exec(select(Post.thread_external_id)).all())
    assert len(ids) == sum(len(specs) for specs in fx.POSTS.values())
    names = {s.author for specs in fx.POSTS.values() for s in specs if s.author}
    forbidden = pseudonyms | ids | names
    values: set[str] = set()
    for family in registry.collect():
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)
            values.update(sample.labels.values())
    assert values, "no samples collected"
    assert not values & forbidden
    signals = {"posts", "threads_started", "active_participants", "sentiment_mean"}
    windows = {"1d", "7d", "28d"}
    assert values <= set(fx.POSTS) | set(fx.SOURCES.values()) | windows | set(fx.GROUPS) | signals
    text = generate_latest(registry).decode()
    for pseudonym in pseudonyms:
        assert pseudonym not in text
