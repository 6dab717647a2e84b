"""Per-community analysis results, computed after polls and read at scrape time.

Nothing at scrape time scans posts: ``Snapshots.refresh`` runs the window
queries, the daily series, coverage, trends and change points for one
community and swaps the result in; the exporter and the API only read it.

The daily series and what is computed from it (trends, change points, decline
scores) cover complete UTC days only, so they change only when the community's
data changes (``monitor.store.changes``), the day ends, or the coverage of a
past day moves; a recompute that finds none of these reuses them
(``SeriesBasis``) and runs only the rolling windows, which end "now".
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine, func
from sqlmodel import Session, select

from monitor.analysis import coverage as cov
from monitor.analysis import trends
from monitor.analysis.changepoints import decline_onset, latest_changepoint
from monitor.analysis.cusum import decline_score
from monitor.analysis.flows import CommunityFlows, compute_flows
from monitor.analysis.rollups import DAY, daily_rows, day_of
from monitor.analysis.terms import MAX_RECENT_DAYS, RankingRules, RisingTerm, TermHistory
from monitor.analysis.windows import WINDOWS, WindowActivity, window_activity
from monitor.config import CommunityBase, Settings
from monitor.store import terms as term_store
from monitor.store.changes import data_version
from monitor.store.models import PollState, Post

SERIES_DAYS = 120


@dataclass(frozen=True)
class DayActivity:
    """One UTC day of a community: counts from the rollups, coverage from the poll history."""

    day: int
    posts: int
    threads_started: int
    replies: int
    active_participants: int
    new_participants: int
    sentiment_sum: float
    sentiment_count: int
    """Posts with a sentiment score."""
    negative_posts: int
    coverage: float

    @property
    def sentiment_mean(self) -> float | None:
        return self.sentiment_sum / self.sentiment_count if self.sentiment_count else None

    @property
    def negative_ratio(self) -> float | None:
        return self.negative_posts / self.sentiment_count if self.sentiment_count else None


SignalValue = Callable[["DayActivity"], float | None]
SIGNALS: dict[str, tuple[trends.SignalKind, SignalValue]] = {
    "posts": (trends.SignalKind.COUNT, lambda d: d.posts),
    "threads_started": (trends.SignalKind.COUNT, lambda d: d.threads_started),
    "active_participants": (trends.SignalKind.COUNT, lambda d: d.active_participants),
    "sentiment_mean": (trends.SignalKind.SCORE, lambda d: d.sentiment_mean),
}
"""Daily signals with trends; active participants are distinct authors per day, so a
window's level is the mean daily count."""
CHANGE_WINDOWS = {"1d": 1, "7d": 7}
CHANGEPOINT_SIGNALS = ("posts", "active_participants", "sentiment_mean")
DECLINE_SIGNALS = ("posts", "threads_started", "active_participants", "sentiment_mean")


@dataclass(frozen=True)
class Trend:
    signal: str
    window: str
    ratio: float


@dataclass(frozen=True)
class ChangePointResult:
    signal: str
    onset: int
    shift_ratio: float


@dataclass(frozen=True)
class DeclineResult:
    signal: str
    score: float
    onset: int
    """The day the decline began (``changepoints.decline_onset``)."""


@dataclass(frozen=True)
class SeriesBasis:
    """Everything the daily series is computed from, but the rollup rows themselves:
    the data version they belong to, the day the series ends before, and the coverage
    of the days before it."""

    data_version: int
    today: int
    past_spans: tuple[cov.Span, ...]


@dataclass(frozen=True)
class CommunitySnapshot:
    community: str
    source: str
    computed_at: int
    windows: dict[str, WindowActivity]
    """Only the windows whose activity is known (``activity_known``)."""
    coverage: dict[str, float]
    """Every window, 0.0 included: that nothing was covered is itself known."""
    last_post_at: int | None
    last_success_at: int | None
    last_error: str | None
    daily: list[DayActivity]
    trends: list[Trend] = field(default_factory=list)
    changepoints: list[ChangePointResult] = field(default_factory=list)
    declines: list[DeclineResult] = field(default_factory=list)
    flows: list[CommunityFlows] = field(default_factory=list)
    """Where its departed participants went, per window (``monitor.analysis.flows``)."""
    terms: TermHistory | None = None
    """Daily term counts for rankings (None when terms are off)."""
    rising_terms: list[RisingTerm] = field(default_factory=list)
    """The last 7 days' rising terms, best first (the status page and the gauge read it)."""
    terms_exported: int = 0
    """How many of ``rising_terms`` the gauge exports (``terms.exported``)."""
    data_version: int = 0
    """The community's data version (``monitor.store.changes``) this was computed from."""
    series_basis: SeriesBasis | None = None


def community_spans(
    session: Session, *, community: CommunityBase, since: int, now: int
) -> list[cov.Span]:
    """Covered spans up to ``now``; time since the last success counts while the next poll
    is not due yet (``coverage.GRACE_INTERVALS``)."""
    spans = cov.covered_spans(session, community_id=community.id, since=since)
    if spans and now - spans[-1][1] <= cov.GRACE_INTERVALS * community.interval:
        spans[-1] = (spans[-1][0], now)
    return spans


def daily_series(
    session: Session, *, community_id: str, spans: list[cov.Span], today: int, days: int
) -> list[DayActivity]:
    """The last ``days`` complete UTC days before ``today``, oldest first, gaps filled."""
    first = today - days * DAY
    rows = {
        row.day: row
        for row in daily_rows(
            session, community_id=community_id, since_day=first, until_day=today - DAY
        )
    }
    points = []
    for day in range(first, today, DAY):
        row = rows.get(day)
        points.append(
            DayActivity(
                day=day,
                posts=row.posts if row else 0,
                threads_started=row.threads_started if row else 0,
                replies=row.replies if row else 0,
                active_participants=row.active_participants if row else 0,
                new_participants=row.new_participants if row else 0,
                sentiment_sum=row.sentiment_sum if row else 0.0,
                sentiment_count=row.sentiment_count if row else 0,
                negative_posts=row.negative_posts if row else 0,
                coverage=cov.coverage_ratio(spans, start=day, end=day + DAY),
            )
        )
    return points


def compute_snapshot(
    session: Session,
    *,
    settings: Settings,
    community: CommunityBase,
    now: int,
    previous: CommunitySnapshot | None = None,
) -> CommunitySnapshot:
    """The community's snapshot at ``now``; the daily series and its trends are taken
    from ``previous`` when their basis is unchanged."""
    version = data_version(session, community_id=community.id)  # before what it versions
    spans = community_spans(session, community=community, since=now - SERIES_DAYS * DAY, now=now)
    coverage = {
        name: cov.coverage_ratio(spans, start=now - seconds, end=now)
        for name, seconds in WINDOWS.items()
    }
    groups = sorted(settings.keyword_groups_for(community))
    windows = {
        name: window_activity(
            session, community_id=community.id, seconds=seconds, now=now, keyword_groups=groups
        )
        for name, seconds in WINDOWS.items()
        if activity_known(coverage[name])
    }
    last_post = session.exec(
        select(func.max(Post.created_at)).where(Post.community_id == community.id)
    ).one()
    state = session.get(PollState, community.id)
    today = day_of(now)
    basis = SeriesBasis(
        data_version=version,
        today=today,
        past_spans=tuple((start, min(end, today)) for start, end in spans if start < today),
    )
    if previous is not None and previous.series_basis == basis:
        daily = previous.daily
        changes, shifts, declines = previous.trends, previous.changepoints, previous.declines
    else:
        daily = daily_series(
            session, community_id=community.id, spans=spans, today=today, days=SERIES_DAYS
        )
        changes, shifts, declines = signal_trends(daily, today=today)
    history = term_history(session, settings=settings, community_id=community.id, now=now)
    rising = history.rising(rules=ranking_rules(settings)) if history is not None else []
    return CommunitySnapshot(
        community=community.id,
        source=str(getattr(community, "source", "")),
        computed_at=now,
        windows=windows,
        coverage=coverage,
        last_post_at=int(last_post) if last_post is not None else None,
        last_success_at=state.last_success_at if state else None,
        last_error=state.last_error if state else None,
        daily=daily,
        trends=changes,
        changepoints=shifts,
        declines=declines,
        terms=history,
        rising_terms=rising,
        terms_exported=settings.terms.exported,
        data_version=version,
        series_basis=basis,
    )


def ranking_rules(settings: Settings) -> RankingRules:
    return RankingRules(
        min_count=settings.terms.min_count, common_share=settings.terms.common_share
    )


def term_history(
    session: Session, *, settings: Settings, community_id: str, now: int
) -> TermHistory | None:
    """The daily term counts and post totals a ranking of up to ``MAX_RECENT_DAYS`` needs."""
    rules = settings.terms
    if not rules.enabled:
        return None
    today = day_of(now)
    first_day = max(
        today - (MAX_RECENT_DAYS + rules.baseline_days - 1) * DAY,
        today - (settings.term_retention_days() - 1) * DAY,
    )
    return TermHistory(
        today=today,
        first_day=first_day,
        baseline_days=rules.baseline_days,
        term_posts=term_store.daily_term_posts(
            session,
            community_id=community_id,
            since_day=first_day,
            k=rules.min_authors,
            pool_days=rules.author_pool_days,
        ),
        posts=term_store.daily_posts(
            session, community_id=community_id, since_day=first_day, until=today + DAY
        ),
    )


def activity_known(coverage: float) -> bool:
    """Whether a span's activity (posts, participants, ...) can be reported at all.

    A span no successful poll covered was never seen: its activity is unknown, not zero,
    so it is left out. A partly covered span reports what was seen; its coverage says how
    much of the span that is.
    """
    return coverage > 0.0


def signal_trends(
    daily: list[DayActivity], *, today: int
) -> tuple[list[Trend], list[ChangePointResult], list[DeclineResult]]:
    """Change ratios, latest change points and decline scores of every signal; withheld
    ones are left out."""
    changes: list[Trend] = []
    shifts: list[ChangePointResult] = []
    declines: list[DeclineResult] = []
    for signal, (kind, pick) in SIGNALS.items():
        series = [trends.DailyPoint(day=d.day, value=pick(d), coverage=d.coverage) for d in daily]
        for window, days in CHANGE_WINDOWS.items():
            ratio = trends.change_ratio(series=series, window_days=days, today=today, kind=kind)
            if ratio is not None:
                changes.append(Trend(signal, window, ratio))
        point = None
        if signal in CHANGEPOINT_SIGNALS:
            point = latest_changepoint(series=series, today=today, kind=kind)
            if point is not None:
                shifts.append(ChangePointResult(signal, point.onset_day, point.shift_ratio))
        if signal in DECLINE_SIGNALS:
            found = decline_score(series=series, today=today, kind=kind)
            if found is not None:
                onset = decline_onset(found, point, today=today)
                declines.append(DeclineResult(signal, found.score, onset))
    return changes, shifts, declines


class Snapshots:
    """The latest snapshot per community; written by refresh jobs, read by scrapes."""

    def __init__(self, *, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine
        self._lock = threading.Lock()
        self._latest: dict[str, CommunitySnapshot] = {}
        self._flows: dict[str, list[CommunityFlows]] = {}
        self._listeners: list[Callable[[CommunitySnapshot], object]] = []

    def on_install(self, listener: Callable[[CommunitySnapshot], object]) -> None:
        """Call ``listener`` with every snapshot installed from now on, once it is the
        latest (the exporter renders its text then, rather than at each scrape)."""
        self._listeners.append(listener)

    def refresh_flows(self, *, namespaces: Mapping[str, str | None], now: int) -> None:
        """Recompute participant flows between the communities of ``namespaces`` (id ->
        platform namespace): one query per namespace; each community's next ``refresh``
        carries its part."""
        with Session(self._engine) as session:
            flows = compute_flows(
                session,
                namespaces=namespaces,
                now=now,
                min_authors=self._settings.flow_min_authors,
            )
        updated: list[CommunitySnapshot] = []
        with self._lock:
            # communities of the namespaces recomputed are replaced; the others kept
            recomputed = {c for c, n in namespaces.items() if n is not None}
            kept = {c: f for c, f in self._flows.items() if c not in recomputed}
            self._flows = {**kept, **flows}
            # and shown at once: a snapshot is recomputed only when its own data moves
            for community_id in recomputed:
                current = self._latest.get(community_id)
                found = self._flows.get(community_id, [])
                if current is not None and current.flows != found:
                    self._latest[community_id] = replace(current, flows=found)
                    updated.append(self._latest[community_id])
        for snapshot in updated:
            self._announce(snapshot)

    def refresh(self, community: CommunityBase, *, now: int) -> CommunitySnapshot:
        """Recompute ``community``'s snapshot at ``now`` and swap it in, unless one from
        newer data or a later time got there first."""
        previous = self.get(community.id)
        with Session(self._engine) as session:
            snapshot = compute_snapshot(
                session, settings=self._settings, community=community, now=now, previous=previous
            )
        with self._lock:
            flows = self._flows.get(community.id, [])
        snapshot = dataclasses.replace(snapshot, flows=flows)
        self.install(snapshot)
        return snapshot

    def install(self, snapshot: CommunitySnapshot) -> bool:
        """Make ``snapshot`` its community's latest, unless one from newer data or a later
        time is there already; says whether it was installed."""
        with self._lock:
            current = self._latest.get(snapshot.community)
            if current is not None and _newness(snapshot) < _newness(current):
                return False
            self._latest[snapshot.community] = snapshot
        self._announce(snapshot)
        return True

    def refresh_state(self, community: CommunityBase) -> int | None:
        """Carry the community's last poll outcome (success, error) into its snapshot
        without recomputing it; returns the data version in the store."""
        with Session(self._engine) as session:
            version = data_version(session, community_id=community.id)
            state = session.get(PollState, community.id)
        if state is None:
            return version
        with self._lock:
            current = self._latest.get(community.id)
            if current is None:
                return version
            outcome = (state.last_success_at, state.last_error)
            if (current.last_success_at, current.last_error) == outcome:
                return version
            updated = replace(
                current, last_success_at=state.last_success_at, last_error=state.last_error
            )
            self._latest[community.id] = updated
        self._announce(updated)
        return version

    def _announce(self, snapshot: CommunitySnapshot) -> None:
        for listener in self._listeners:
            listener(snapshot)

    def all(self) -> list[CommunitySnapshot]:
        with self._lock:
            return list(self._latest.values())

    def get(self, community_id: str) -> CommunitySnapshot | None:
        with self._lock:
            return self._latest.get(community_id)


def _newness(snapshot: CommunitySnapshot) -> tuple[int, int]:
    return snapshot.data_version, snapshot.computed_at
