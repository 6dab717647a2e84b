"""The demo's simulated histories: deterministic, plausible, within what the adapters page;
and what the service makes of the gig-work one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.analysis.conditions import DECLINE_SCORE_THRESHOLD, score_conditions
from monitor.analysis.text import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, KeywordMatcher, sentiment
from monitor.demo import HISTORY_DAYS, DemoOptions, demo_settings
from monitor.fakeforum.scenario import (
    DAY,
    DEMO_KEYWORDS,
    DEMO_PLANS,
    KEYWORD_TEXTS,
    TEXTS,
    Simulation,
    event_day,
    history,
)
from monitor.service import Service

NOW = 1_717_243_200 + 13 * 3600  # 2024-06-02 01:00 UTC
PLANS = {plan.id: plan for plan in DEMO_PLANS}


def test_text_pools_score_in_their_class() -> None:
    pools = [(mood, text) for mood, texts in TEXTS.items() for text in texts]
    pools += [(m, t) for group in KEYWORD_TEXTS.values() for m, ts in group.items() for t in ts]
    for mood, text in pools:
        score = sentiment(text)
        if mood == "positive":
            assert score > POSITIVE_THRESHOLD, text
        elif mood == "negative":
            assert score <= NEGATIVE_THRESHOLD, text
        else:
            assert NEGATIVE_THRESHOLD < score < POSITIVE_THRESHOLD, text


def test_keyword_texts_match_their_group() -> None:
    matcher = KeywordMatcher(DEMO_KEYWORDS)
    for group, by_mood in KEYWORD_TEXTS.items():
        for texts in by_mood.values():
            for text in texts:
                assert group in matcher.groups_in(text), text
    for texts in TEXTS.values():
        for text in texts:
            assert matcher.groups_in(text) == [], text


def test_history_is_deterministic_per_seed() -> None:
    plan = PLANS["gigwork"]
    first = history(plan, now=NOW, days=120, seed=7)
    assert first == history(plan, now=NOW, days=120, seed=7)
    assert first != history(plan, now=NOW, days=120, seed=8)
    assert all(post.created < NOW for post in first)
    assert [p.created for p in first] == sorted(p.created for p in first)


@pytest.mark.parametrize("plan_id", ["gigwork", "rival", "rivalsub", "control"])
def test_history_fits_one_first_poll(plan_id: str) -> None:
    plan = PLANS[plan_id]
    posts = history(plan, now=NOW, days=120, seed=7)
    threads = sum(1 for p in posts if p.thread is None)
    replies = len(posts) - threads
    if plan.source == "reddit":
        assert threads < 900 and replies < 900  # 10 pages of 100 per listing, room for live
    else:
        assert len(posts) < 900  # 20 pages of 50 posts


def _per_day(posts: list, start: int, end: int) -> float:  # type: ignore[type-arg]
    return sum(1 for p in posts if start <= p.created < end) / ((end - start) / DAY)


def test_gig_community_halves_and_sours_while_pay_mentions_rise() -> None:
    posts = history(PLANS["gigwork"], now=NOW, days=120, seed=7)
    today = NOW // DAY * DAY
    before = _per_day(posts, today - 60 * DAY, today - 30 * DAY)
    after = _per_day(posts, today - 30 * DAY, today)
    assert after < 0.6 * before

    def authors(start: int, end: int) -> float:
        days = range(start, end, DAY)
        return sum(len({p.author for p in posts if d <= p.created < d + DAY}) for d in days) / len(
            days
        )

    assert authors(today - 7 * DAY, today) < 0.5 * authors(today - 60 * DAY, today - 30 * DAY)
    recent = [p for p in posts if p.created >= today - 7 * DAY]
    early = [p for p in posts if today - 60 * DAY <= p.created < today - 30 * DAY]
    mean = lambda group: sum(sentiment(p.text) for p in group) / len(group)  # noqa: E731
    assert mean(recent) < mean(early) - 0.4
    pay = KeywordMatcher(DEMO_KEYWORDS)
    share = lambda group: sum("pay" in pay.groups_in(p.text) for p in group) / len(group)  # noqa: E731
    assert share(recent) > 3 * share(early)


def test_control_stays_level_and_rival_grows() -> None:
    today = NOW // DAY * DAY
    control = history(PLANS["control"], now=NOW, days=120, seed=7)
    weeks = [_per_day(control, today - (w + 1) * 7 * DAY, today - w * 7 * DAY) for w in range(12)]
    assert max(weeks) / min(weeks) < 1.2
    rival = history(PLANS["rival"], now=NOW, days=120, seed=7)
    assert _per_day(rival, today - 7 * DAY, today) > 1.5 * _per_day(
        rival, today - 60 * DAY, today - 30 * DAY
    )


async def test_gig_decline_is_dated_by_its_event(tmp_path: Path) -> None:
    """The demo's path (its seed, fake forum, adapters, store, snapshot): the onset that the
    status page, the API and the alert's onset gauge show is the labelled event's day,
    within 2 days. The decline score's own onset alone said 16 days after it."""
    simulation = Simulation(DEMO_PLANS).start()
    try:
        simulation.load_history(now=NOW, days=HISTORY_DAYS, seed=DemoOptions.seed)
        settings = demo_settings(simulation, workdir=tmp_path)
        service = Service(settings, registry=CollectorRegistry(), clock=lambda: NOW)
        await service.open()
        try:
            assert {o.outcome for o in await service.poll_all()} == {"ok"}
            assert service.snapshots is not None
            snapshot = service.snapshots.get("gigwork")
            gauge = {
                signal: service.registry.get_sample_value(
                    "forum_decline_onset_timestamp_seconds",
                    {"community": "gigwork", "source": "reddit", "signal": signal},
                )
                for signal in ("posts", "active_participants")
            }
        finally:
            await service.stop()
    finally:
        simulation.stop()
    event = PLANS["gigwork"].event
    assert event is not None
    labelled = event_day(event, now=NOW)
    assert snapshot is not None
    declines = {d.signal: d for d in snapshot.declines}
    for signal, onset in gauge.items():
        assert declines[signal].score > DECLINE_SCORE_THRESHOLD, signal
        assert onset == declines[signal].onset
        assert abs(declines[signal].onset - labelled) <= 2 * DAY, (
            signal,
            (declines[signal].onset - labelled) / DAY,
        )
    said = {
        found["signal"]: found["since"]
        for condition in score_conditions(snapshot)
        if (
            found := re.match(
                r"(?P<signal>\w+) in decline since (?P<since>[\d-]+)", condition.summary
            )
        )
    }
    near = {
        datetime.fromtimestamp(labelled + k * DAY, UTC).date().isoformat() for k in range(-2, 3)
    }
    assert set(said) == {"posts", "active_participants"}
    assert set(said.values()) <= near, (said, sorted(near))
