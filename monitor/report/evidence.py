"""What an evidence report states about one community and period, read from the store.

Nothing here touches the network. The period is whole UTC days ``[since, until)``. The
detectors run exactly as the service runs them at the period's end: over the 120 complete
days before ``until`` (``SERIES_DAYS``), with the same coverage gating, so the change
points and decline scores are the ones the service exported (or would have) that day.
Only change points whose onset lies inside the period are reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.analysis.changepoints import decline_onset, latest_changepoint
from monitor.analysis.coverage import BACKFILL_OUTCOME, SUCCESS
from monitor.analysis.cusum import DECLINE_SCORE_THRESHOLD, RECENT_DAYS, decline_score
from monitor.analysis.flows import (
    FLOW_WINDOWS,
    CommunityFlows,
    anonymous_flows,
    flow_counts_until,
)
from monitor.analysis.rollups import DAY
from monitor.analysis.snapshot import (
    CHANGEPOINT_SIGNALS,
    DECLINE_SIGNALS,
    SERIES_DAYS,
    SIGNALS,
    DayActivity,
    community_spans,
    daily_series,
    ranking_rules,
    term_history,
)
from monitor.analysis.terms import RisingTerm
from monitor.analysis.trends import GOOD_COVERAGE, DailyPoint
from monitor.config import CommunityBase, FeedCommunity, HackerNewsCommunity, Settings
from monitor.sources import author_namespace
from monitor.store.models import Community, PollRun, PollState
from monitor.untrusted import without_userinfo

SCOPE_FIELDS = (
    "subreddit",
    "category",
    "query",
    "hashtag",
    "local",
    "repository",
    "site",
    "tagged",
    "community",
)
"""Config keys that say which part of a source is watched (never credentials)."""


@dataclass(frozen=True)
class ChangeFound:
    signal: str
    onset: int
    """UTC midnight of the first day at the new level."""
    drop: int
    """For a shift down, the first day of the decline that ends in it."""
    level_before: float
    level_after: float
    shift_ratio: float


@dataclass(frozen=True)
class DeclineFound:
    signal: str
    score: float
    onset: int

    @property
    def declining(self) -> bool:
        return self.score > DECLINE_SCORE_THRESHOLD


@dataclass(frozen=True)
class Gap:
    first: int
    last: int
    """UTC midnights of the first and last day under ``GOOD_COVERAGE``."""
    coverage: float
    """Mean coverage of those days (0.0: no successful poll saw any of it)."""

    @property
    def days(self) -> int:
        return (self.last - self.first) // DAY + 1


@dataclass(frozen=True)
class Provenance:
    source: str
    endpoints: list[str]
    scope: list[tuple[str, str]]
    watched_since: int | None
    """When the community was first written to the store."""
    first_poll: int | None
    last_poll: int | None
    polls_in_period: Counter[str]
    """Poll runs that started in the period, by outcome."""
    requests_in_period: int
    requests_total: int
    last_success: int | None
    last_error: str | None
    store: str


@dataclass(frozen=True)
class Evidence:
    community: str
    since: int
    until: int
    generated_at: int
    daily: list[DayActivity]
    """One per day of the period, oldest first."""
    changes: list[ChangeFound]
    declines: list[DeclineFound]
    gaps: list[Gap]
    provenance: Provenance
    command: str
    """The command line that makes this report again."""
    baseline_posts_per_day: float | None = None
    """Mean posts per counted day of the decline score's baseline (the 92 days before the
    last 28 of the 120 the detectors see): the size the detector judges against."""
    flows: CommunityFlows | None = None
    """Where the community's departed participants went in the 28 days before ``flows_at``
    (None when the community has no platform namespace, e.g. a feed)."""
    flows_at: int | None = None
    rising_terms: list[RisingTerm] | None = None
    """The terms that rose in the period's last 7 days against the baseline before them,
    best first (None when terms are off)."""

    @property
    def counted_days(self) -> list[DayActivity]:
        return [d for d in self.daily if d.coverage >= GOOD_COVERAGE]

    @property
    def posts_per_day(self) -> float | None:
        """Mean posts per counted day of the period (None when no day counts)."""
        return mean_posts(self.daily)


def mean_posts(days: list[DayActivity]) -> float | None:
    """Mean posts per counted day of ``days`` (None when none counts)."""
    counted = [d for d in days if d.coverage >= GOOD_COVERAGE]
    return sum(d.posts for d in counted) / len(counted) if counted else None


def endpoints(community: CommunityBase) -> list[str]:
    """The API roots a community is read from, without credentials, query or fragment."""
    from monitor.sources import SOURCES

    source = str(getattr(community, "source", ""))
    if isinstance(community, FeedCommunity):
        roots = [community.url]
    else:
        kind = SOURCES.get(source)
        roots = [community.url_root(kind.default_base_url if kind else "")]
    if isinstance(community, HackerNewsCommunity) and community.query:
        from monitor.sources.hackernews import ALGOLIA_URL

        roots.append(community.search_base_url or ALGOLIA_URL)
    shown = []
    for root in roots:
        parts = urlsplit(without_userinfo(root))
        shown.append(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    return [root for root in shown if root]


def scope(community: CommunityBase) -> list[tuple[str, str]]:
    found = []
    for key in SCOPE_FIELDS:
        value = getattr(community, key, None)
        if value is None or value is False:
            continue
        text = ", ".join(value) if isinstance(value, list) else str(value)
        found.append((key, text))
    return found


def provenance(
    session: Session, *, community: CommunityBase, since: int, until: int, store: str
) -> Provenance:
    runs = PollRun.community_id == community.id
    first, last, total = session.exec(
        select(
            func.min(PollRun.started_at), func.max(PollRun.finished_at), func.sum(PollRun.requests)
        ).where(runs)
    ).one()
    in_period = session.exec(
        select(PollRun.outcome, func.count(), func.sum(PollRun.requests))
        .where(runs, PollRun.started_at >= since, PollRun.started_at < until)
        .group_by(PollRun.outcome)
    ).all()
    state = session.get(PollState, community.id)
    row = session.get(Community, community.id)
    return Provenance(
        source=str(getattr(community, "source", "")),
        endpoints=endpoints(community),
        scope=scope(community),
        watched_since=row.created_at if row else None,
        first_poll=first,
        last_poll=last,
        polls_in_period=Counter({outcome: count for outcome, count, _ in in_period}),
        requests_in_period=sum(requests or 0 for _, _, requests in in_period),
        requests_total=int(total or 0),
        last_success=state.last_success_at if state else None,
        last_error=state.last_error if state else None,
        store=store,
    )


def has_polls(session: Session, community_id: str) -> bool:
    found = session.exec(
        select(func.count()).where(
            PollRun.community_id == community_id,
            col(PollRun.outcome).in_((*SUCCESS, BACKFILL_OUTCOME)),
        )
    ).one()
    return bool(found)


def gaps(daily: list[DayActivity]) -> list[Gap]:
    """Runs of days under ``GOOD_COVERAGE``: what the charts leave blank."""
    runs: list[list[DayActivity]] = []
    for day in daily:
        if day.coverage >= GOOD_COVERAGE:
            continue
        if runs and runs[-1][-1].day == day.day - DAY:
            runs[-1].append(day)
        else:
            runs.append([day])
    return [Gap(run[0].day, run[-1].day, sum(d.coverage for d in run) / len(run)) for run in runs]


def detections(
    history: list[DayActivity], *, until: int
) -> tuple[list[ChangeFound], list[DeclineFound]]:
    """Latest change point and decline score per signal at ``until``, as the service
    computes them (``snapshot.signal_trends``), with the change points' levels kept."""
    changes: list[ChangeFound] = []
    declines: list[DeclineFound] = []
    for signal, (kind, pick) in SIGNALS.items():
        series = [DailyPoint(day=d.day, value=pick(d), coverage=d.coverage) for d in history]
        point = None
        if signal in CHANGEPOINT_SIGNALS:
            point = latest_changepoint(series=series, today=until, kind=kind)
            if point is not None:
                changes.append(
                    ChangeFound(
                        signal=signal,
                        onset=point.onset_day,
                        drop=point.drop_day,
                        level_before=point.level_before,
                        level_after=point.level_after,
                        shift_ratio=point.shift_ratio,
                    )
                )
        if signal in DECLINE_SIGNALS:
            found = decline_score(series=series, today=until, kind=kind)
            if found is not None:
                onset = decline_onset(found, point, today=until)
                declines.append(DeclineFound(signal, found.score, onset))
    return changes, declines


def gather(
    session: Session,
    *,
    community: CommunityBase,
    since: int,
    until: int,
    now: int,
    store: str,
    command: str,
) -> Evidence:
    """The evidence for ``community`` over the UTC days ``[since, until)``."""
    first = min(since, until - SERIES_DAYS * DAY)
    spans = community_spans(session, community=community, since=first, now=now)
    history = daily_series(
        session,
        community_id=community.id,
        spans=spans,
        today=until,
        days=(until - first) // DAY,
    )
    daily = [d for d in history if d.day >= since]
    seen = [d for d in history if d.day >= until - SERIES_DAYS * DAY]
    changes, declines = detections(seen, until=until)
    baseline = [d for d in seen if d.day < until - RECENT_DAYS * DAY]
    return Evidence(
        community=community.id,
        since=since,
        until=until,
        generated_at=now,
        daily=daily,
        changes=[c for c in changes if since <= c.onset < until],
        declines=declines,
        gaps=gaps(daily),
        provenance=provenance(session, community=community, since=since, until=until, store=store),
        command=command,
        baseline_posts_per_day=mean_posts(baseline),
    )


def period_flows(
    session: Session, *, settings: Settings, community: CommunityBase, until: int
) -> CommunityFlows | None:
    """``community``'s participant flows over the 28 days before ``until`` (the period's
    end), from each author's last post before it, k-anonymous and between enabled
    communities of its platform namespace only, as the service counts them; None when its
    source has no namespace."""
    namespace = author_namespace(community)
    if namespace is None:
        return None
    members = sorted(
        {c.id for c in settings.communities if c.enabled and author_namespace(c) == namespace}
        | {community.id}
    )
    counts = flow_counts_until(
        session, communities=members, until=until, seconds=FLOW_WINDOWS["28d"]
    )
    return anonymous_flows(
        counts,
        communities=members,
        namespace=namespace,
        window="28d",
        min_authors=settings.flow_min_authors,
    )[community.id]


RISING_TERMS_LISTED = 15


def period_rising_terms(
    session: Session, *, settings: Settings, community: CommunityBase, until: int
) -> list[RisingTerm] | None:
    """The rising terms of the 7 days ending with the period's last day (``until`` is the
    day after it), ranked as the service ranks them; None when terms are off."""
    history = term_history(session, settings=settings, community_id=community.id, now=until - 1)
    if history is None:
        return None
    return history.rising(days=7, limit=RISING_TERMS_LISTED, rules=ranking_rules(settings))
