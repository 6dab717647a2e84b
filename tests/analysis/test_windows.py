"""Every activity gauge, for every fixture community and window, against hand-derived values.

The posts, times and scores are in ``tests.analysis.fixture``; each expected value below
is derived from that listing in the comment next to it (``T`` thread start, ``R`` reply).
Windows are half-open ``[NOW - W, NOW)``; see the fixture's docstring for their bounds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from monitor.analysis.windows import WINDOWS, KeywordActivity, WindowActivity, window_activity
from monitor.config import settings_from_mapping
from tests.analysis import fixture as fx
from tests.analysis.fixture import NOW


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine, _ = fx.build(Path(tmp_path_factory.mktemp("windows")))
    yield engine
    engine.dispose()


def activity(engine: Engine, community: str, window: str, **kwargs: Any) -> WindowActivity:
    with Session(engine) as session:
        return window_activity(
            session,
            community_id=community,
            seconds=WINDOWS[window],
            now=kwargs.pop("now", NOW),
            keyword_groups=fx.GROUPS,
            **kwargs,
        )


def kw(posts: int, mean: float | None) -> KeywordActivity:
    return KeywordActivity(posts, mean)


EXPECTED: dict[tuple[str, str], WindowActivity] = {
    # ---------------------------------------------------------------- gig
    # 1d = [-1 12:00, NOW): g8r2 (a, -1 14:00, QUIT 0.0), g9 (T b, 0 06:00, AWFUL -0.4588)
    ("gig", "1d"): WindowActivity(
        posts=2,
        threads_started=1,  # g9
        active_participants=2,  # a, b
        new_participants=0,  # a, b first seen 59 days ago
        # previous 1d [-2 12:00, -1 12:00): g8 (f, -2 15:00), g8r1 (b, -1 09:00) -> {f, b};
        # b posted again, f did not -> 1/2
        returning_participants_ratio=0.5,
        thread_participants_avg=1.0,  # g9: {b}
        thread_replies_avg=0.0,  # g9: no reply
        unanswered_threads_ratio=0.0,  # settled in the last day: g8 (started -2 15:00), answered
        first_reply_median_seconds=None,  # no thread started in 1d has a reply
        sentiment_mean=(0.0 - 0.4588) / 2,
        sentiment_negative_ratio=1 / 2,  # g9
        keywords={"leave": kw(1, 0.0), "pay": kw(0, None)},  # g8r2 "quit ... switching to"
    ),
    # 7d = [-7 12:00, NOW): g7 (T b, PER_HOUR), g7r1 (deleted), g7r2 (a, SWITCHING),
    # g8 (T f), g8r1 (b), g8r2 (a, QUIT), g9 (T b, AWFUL)
    ("gig", "7d"): WindowActivity(
        posts=7,  # the deleted reply counts
        threads_started=3,  # g7, g8, g9
        active_participants=3,  # a, b, f (the deleted reply has no author)
        new_participants=0,  # f first seen -19
        # previous 7d [-14 12:00, -7 12:00): g6 (c) -> {c}; c silent since -> 0/1
        returning_participants_ratio=0.0,
        thread_participants_avg=(2 + 3 + 1) / 3,  # g7 {b, a}, g8 {f, b, a}, g9 {b}
        thread_replies_avg=(2 + 2 + 0) / 3,  # g7: g7r1 (deleted) + g7r2; g8: 2; g9: 0
        unanswered_threads_ratio=0.0,  # settled g7, g8 both answered; g9 (6 h) not settled
        # g7: deleted reply after 1 h = 3600; g8: -2 15:00 -> -1 09:00 = 18 h = 64800;
        # even count -> mean of the two middle values
        first_reply_median_seconds=(3600 + 64800) / 2,
        # scored: g7 -0.3412, g7r2 0, g8 0, g8r1 0, g8r2 0, g9 -0.4588 (deleted not scored)
        sentiment_mean=(-0.3412 - 0.4588) / 6,
        sentiment_negative_ratio=2 / 6,  # g7, g9
        keywords={"leave": kw(2, 0.0), "pay": kw(1, -0.3412)},  # leave g7r2, g8r2; pay g7
    ),
    # 28d = [-28 12:00, NOW): g5 (T a, PAY_CUT), g5r1 (b, RATE_AWFUL), g5r2 (f, SEPARATELY),
    # g6 (T c, PAY_CUTS), and the 7 posts of 7d
    ("gig", "28d"): WindowActivity(
        posts=11,
        threads_started=5,  # g5, g6, g7, g8, g9
        active_participants=4,  # a, b, c, f
        new_participants=1,  # f (-19 10:00)
        # previous 28d [-56 12:00, -28 12:00): g2..g4 -> {a, b, c, d, e}; a, b, c posted
        # again -> 3/5
        returning_participants_ratio=3 / 5,
        # g5 {a, b, f}, g6 {c}, g7 {b, a}, g8 {f, b, a}, g9 {b}
        thread_participants_avg=(3 + 1 + 2 + 3 + 1) / 5,
        thread_replies_avg=(2 + 0 + 2 + 2 + 0) / 5,
        unanswered_threads_ratio=1 / 4,  # settled g5, g6, g7, g8: g6 unanswered
        # g5 2 h = 7200, g7 3600, g8 64800 -> sorted 3600, 7200, 64800 -> 7200
        first_reply_median_seconds=7200.0,
        # 10 scored (g7r1 deleted): -0.3612 - 0.4588 + 0 - 0.3818 - 0.3412 + 0*4 - 0.4588
        sentiment_mean=(-0.3612 - 0.4588 - 0.3818 - 0.3412 - 0.4588) / 10,
        sentiment_negative_ratio=5 / 10,  # g5, g5r1, g6, g7, g9
        keywords={
            "leave": kw(2, 0.0),
            # g5 "pay cut", g5r1 "rate", g7 "$/hr"; not g5r2 "separately", not g6 "pay cuts"
            "pay": kw(3, (-0.3612 - 0.4588 - 0.3412) / 3),
        },
    ),
    # -------------------------------------------------------------- rival
    # 1d: r7 (T h, -1 13:00), r7r1 (i, -1 15:00), r8 (T i, 0 08:00, SWITCHING),
    # r6r2 (a, 0 09:00, GREAT 0.7906)
    ("rival", "1d"): WindowActivity(
        posts=4,
        threads_started=2,  # r7, r8
        active_participants=3,  # h, i, a
        new_participants=1,  # i (-1 15:00); h first seen -2 15:00, a -45
        # previous 1d: r6 (g, -2 14:00), r6r1 (h, -2 15:00) -> {g, h}; h again -> 1/2
        returning_participants_ratio=0.5,
        thread_participants_avg=(2 + 1) / 2,  # r7 {h, i}, r8 {i}
        thread_replies_avg=(1 + 0) / 2,
        # r7 is 23 h old (answered anyway), r8 4 h: neither past the 24 h grace
        unanswered_threads_ratio=0.0,  # settled in the last day: r6 (-2 14:00), answered
        first_reply_median_seconds=7200.0,  # r7: 2 h
        sentiment_mean=0.7906 / 4,
        sentiment_negative_ratio=0.0,
        keywords={"leave": kw(1, 0.0), "pay": kw(0, None)},  # r8
    ),
    # 7d: r4 (T e, -7 12:00 = window start, included), r4r1 (a), r3r2 (c), r4r2 (f),
    # r9 (T b), r5 (T f), r5r1 (g), r5r2 (a), r6 (T g), r6r1 (h), and the 4 posts of 1d
    ("rival", "7d"): WindowActivity(
        posts=14,
        threads_started=6,  # r4, r9, r5, r6, r7, r8 (r3 started in the previous 7d)
        active_participants=8,  # a, b, c, e, f, g, h, i
        # e (first post exactly at the window start), f, g, h, i; a, b, c are older
        new_participants=5,
        # previous 7d [-14 12:00, -7 12:00): r3 (d), r3r1 (c) -> {c, d}; c again -> 1/2
        returning_participants_ratio=0.5,
        # r4 {e, a, f}, r9 {b}, r5 {f, g, a}, r6 {g, h, a}, r7 {h, i}, r8 {i}
        thread_participants_avg=(3 + 1 + 3 + 3 + 2 + 1) / 6,
        thread_replies_avg=(2 + 0 + 2 + 2 + 1 + 0) / 6,
        # settled: r4, r9, r5, r6 (r6 46 h old); r7 (23 h) and r8 (4 h) not yet.
        # r9 unanswered; r8, also unanswered, is within the grace and not counted -> 1/4
        unanswered_threads_ratio=1 / 4,
        # r4 8 h = 28800, r5 30 min = 1800, r6 1 h = 3600, r7 2 h = 7200
        # -> sorted 1800, 3600, 7200, 28800 -> (3600 + 7200) / 2
        first_reply_median_seconds=5400.0,
        # all 14 scored: WELCOME x2 (r4r1, r6r1), COMMUNITY x2 + RATE_UP (r3r2, r5r2, r4r2),
        # GREAT (r6r2), the rest 0
        sentiment_mean=(2 * 0.4767 + 3 * 0.6249 + 0.7906) / 14,
        sentiment_negative_ratio=0.0,
        keywords={"leave": kw(1, 0.0), "pay": kw(1, 0.6249)},  # r8; r4r2 "rate"
    ),
    # 28d: r2 (T c), r2r1 (a, GREAT), r3 (T d), r3r1 (c), and the 14 posts of 7d
    ("rival", "28d"): WindowActivity(
        posts=18,
        threads_started=8,  # r2, r3 + the 6 of 7d
        active_participants=9,  # a .. i
        new_participants=7,  # c, d, e, f, g, h, i (a and b first seen -45)
        # previous 28d: r1 (a), r1r1 (b) -> {a, b}; both again -> 2/2
        returning_participants_ratio=1.0,
        # r2 {c, a}, r3 {d, c} (r3r1 and r3r2 both c), + 13 from 7d
        thread_participants_avg=(2 + 2 + 13) / 8,
        thread_replies_avg=(1 + 2 + 7) / 8,  # r3's reply r3r2 came in the 7d window
        unanswered_threads_ratio=1 / 6,  # settled r2, r3, r4, r9, r5, r6: r9
        # r2 10 h = 36000, r3 4 h = 14400, + 28800, 1800, 3600, 7200
        # -> sorted 1800, 3600, 7200, 14400, 28800, 36000 -> (7200 + 14400) / 2
        first_reply_median_seconds=10800.0,
        sentiment_mean=(2 * 0.4767 + 3 * 0.6249 + 0.7906 + 0.7906) / 18,
        sentiment_negative_ratio=0.0,
        keywords={"leave": kw(1, 0.0), "pay": kw(1, 0.6249)},
    ),
    # ------------------------------------------------------------- steady
    # 1d: s9 (T a, -1 12:00 = window start), s10 (T e, 0 10:00), s8r3 (b, 0 11:00, 0.6249)
    ("steady", "1d"): WindowActivity(
        posts=3,
        threads_started=2,  # s9, s10
        active_participants=3,  # a, b, e
        new_participants=1,  # e
        returning_participants_ratio=None,  # nobody posted in [-2 12:00, -1 12:00)
        thread_participants_avg=1.0,  # s9 {a}, s10 {e}
        thread_replies_avg=0.0,
        # threads started in [-2 12:00, -1 12:00) settled in the last day: none (s9 is at -1 12:00)
        unanswered_threads_ratio=None,
        first_reply_median_seconds=None,
        sentiment_mean=0.6249 / 3,
        sentiment_negative_ratio=0.0,
        keywords={"leave": kw(0, None), "pay": kw(0, None)},
    ),
    # 7d: s8 (T a, -7 12:00 = window start), s8r1 (b, WELCOME), s8r2 (d, first seen -58),
    # and the 3 posts of 1d
    ("steady", "7d"): WindowActivity(
        posts=6,
        threads_started=3,  # s8, s9, s10
        active_participants=4,  # a, b, d, e
        new_participants=1,  # e; d's older post (-58) is outside the window
        # previous 7d [-14 12:00, -7 12:00): s7 (deleted, no author), s7r1 (c) -> {c};
        # c not again -> 0/1
        returning_participants_ratio=0.0,
        thread_participants_avg=(3 + 1 + 1) / 3,  # s8 {a, b, d}, s9 {a}, s10 {e}
        thread_replies_avg=(3 + 0 + 0) / 3,
        unanswered_threads_ratio=0.0,  # started in [-8 12:00, -1 12:00): s8, answered
        first_reply_median_seconds=21600.0,  # s8: 6 h
        sentiment_mean=(0.4767 + 0.6249) / 6,
        sentiment_negative_ratio=0.0,
        keywords={"leave": kw(0, None), "pay": kw(0, None)},
    ),
    # 28d: s5 (T a, -28 12:00 = window start), s5r1 (c, GREAT), s6 (T a), s6r1 (b, AWFUL),
    # s7 (deleted T), s7r1 (c), and the 6 posts of 7d
    ("steady", "28d"): WindowActivity(
        posts=12,
        threads_started=6,  # s5 .. s10 (s7's start is deleted but still a thread)
        active_participants=5,  # a, b, c, d, e
        new_participants=1,  # e
        # previous 28d [-56 12:00, -28 12:00): s2..s4 -> {a, b, c}; all again -> 3/3
        returning_participants_ratio=1.0,
        # s5 {a, c}, s6 {a, b}, s7 {c} (deleted starter has no author), s8 3, s9 1, s10 1
        thread_participants_avg=(2 + 2 + 1 + 3 + 1 + 1) / 6,
        thread_replies_avg=(1 + 1 + 1 + 3 + 0 + 0) / 6,
        unanswered_threads_ratio=0.0,  # started in [-29 12:00, -1 12:00): s5 .. s8, all answered
        # s5 2 h = 7200, s6 1 h = 3600, s7 4 h = 14400, s8 6 h = 21600
        # -> sorted 3600, 7200, 14400, 21600 -> (7200 + 14400) / 2
        first_reply_median_seconds=10800.0,
        # 11 scored (s7 deleted): 0.7906 - 0.4588 + 0.4767 + 0.6249, the rest 0
        sentiment_mean=(0.7906 - 0.4588 + 0.4767 + 0.6249) / 11,
        sentiment_negative_ratio=1 / 11,  # s6r1
        keywords={"leave": kw(0, None), "pay": kw(0, None)},
    ),
}


def approx(expected: WindowActivity) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-12))
        for name, value in vars(expected).items()
        if name != "keywords"
    }
    values["keywords"] = {
        group: (
            found.posts,
            None if found.sentiment_mean is None else pytest.approx(found.sentiment_mean),
        )
        for group, found in expected.keywords.items()
    }
    return values


def actual(found: WindowActivity) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: value for name, value in vars(found).items() if name != "keywords"
    }
    values["keywords"] = {
        group: (activity.posts, activity.sentiment_mean)
        for group, activity in found.keywords.items()
    }
    return values


@pytest.mark.parametrize(("community", "window"), sorted(EXPECTED))
def test_every_gauge_matches_the_hand_derivation(
    engine: Engine, community: str, window: str
) -> None:
    assert actual(activity(engine, community, window)) == approx(EXPECTED[(community, window)])


def test_the_fixture_covers_every_community_and_window() -> None:
    assert set(EXPECTED) == {(c, w) for c in fx.POSTS for w in WINDOWS}


def test_window_end_is_exclusive(engine: Engine) -> None:
    # At NOW = s9's creation time + 24 h the 1d window starts exactly at s9 (included);
    # one second earlier s9 is the window's end (excluded) and the window holds only
    # posts of [-2 11:59:59, -1 11:59:59): none in steady.
    earlier = activity(engine, "steady", "1d", now=fx.at(-1, "12:00"))
    assert (earlier.posts, earlier.threads_started) == (0, 0)
    assert earlier.sentiment_mean is None
    assert earlier.sentiment_negative_ratio is None
    assert earlier.thread_participants_avg is None
    assert earlier.thread_replies_avg is None


def test_grace_period_decides_whether_a_young_thread_counts(engine: Engine) -> None:
    # Unanswered is judged on threads started in the window shifted back by the grace.
    # steady 1d, 1 h grace: [-1 11:00, 0 11:00) holds s9 and s10, both unanswered -> 2/2;
    # 25 h grace: [-2 11:00, -1 11:00) holds no steady thread -> undefined.
    short = activity(engine, "steady", "1d", unanswered_grace=3600)
    assert short.unanswered_threads_ratio == 1.0
    long = activity(engine, "steady", "1d", unanswered_grace=25 * 3600)
    assert long.unanswered_threads_ratio is None
    # rival 7d with no grace at all: r4, r9, r5, r6, r7, r8 judged; r9 and r8 unanswered
    none = activity(engine, "rival", "7d", unanswered_grace=0)
    assert none.unanswered_threads_ratio == pytest.approx(2 / 6)


def test_keyword_groups_follow_the_community_override(tmp_path: Path) -> None:
    # a per-community group replaces the global one of the same name; "pay" now only
    # matches "pay cut", so gig 28d has g5 only ("pay cuts" in g6 still does not match)
    data = copy.deepcopy(fx.SETTINGS_DATA)
    data["communities"][0]["keywords"] = {"pay": ["pay cut"]}
    engine, _ = fx.build(tmp_path, settings_=settings_from_mapping(data))
    try:
        found = activity(engine, "gig", "28d")
        assert found.keywords["pay"].posts == 1
        assert found.keywords["pay"].sentiment_mean == pytest.approx(-0.3612)
        assert found.keywords["leave"] == KeywordActivity(2, 0.0)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_every_gauge_on_postgresql(pg_url: str) -> None:
    engine, _ = fx.build(url=pg_url)
    try:
        for (community, window), expected in sorted(EXPECTED.items()):
            found = actual(activity(engine, community, window))
            assert found == approx(expected), (community, window)
    finally:
        engine.dispose()


def test_unanswered_ratio_of_1d_covers_the_threads_that_settled_in_the_last_day(
    engine: Engine,
) -> None:
    # Every thread started in [NOW - 24 h, NOW) is younger than the 24 h grace (bar one
    # started at NOW - 24 h to the second), so the 1d ratio is undefined for gig and rival
    # although g8 (gig, 45 h old, answered) and r6 (rival, 46 h old, answered) settled during
    # the last day. Judged over the threads that became older than the grace during the
    # window, i.e. started in [NOW - 48 h, NOW - 24 h), both are 0/1.
    assert activity(engine, "gig", "1d").unanswered_threads_ratio == 0.0
    assert activity(engine, "rival", "1d").unanswered_threads_ratio == 0.0
