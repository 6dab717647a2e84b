"""Community gauges, from precomputed snapshots.

A custom Collector (as in prometheus/client_python's docs): nothing here queries the
store, and a community's text is rendered when its snapshot is installed, not at every
scrape (``monitor.exposition``). Undefined values (no threads in the window, a baseline
too short or with gaps) are left out rather than exported as 0, so a panel or a rule
never mistakes "unknown" for "zero". So is every activity gauge of a window no
successful poll covered (a community that has never been polled): its
``forum_coverage_ratio`` of 0 is the one thing known about it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import exposition
from monitor.analysis.snapshot import CommunitySnapshot, Snapshots
from monitor.analysis.windows import WindowActivity

WINDOW_GAUGES: list[tuple[str, str, Callable[[WindowActivity], float | None]]] = [
    ("forum_posts", "Posts (thread starts and replies) created in the window.", lambda w: w.posts),
    ("forum_threads_started", "Threads created in the window.", lambda w: w.threads_started),
    (
        "forum_active_participants",
        "Distinct authors who posted in the window.",
        lambda w: w.active_participants,
    ),
    (
        "forum_new_participants",
        "Authors whose first seen post falls in the window.",
        lambda w: w.new_participants,
    ),
    (
        "forum_returning_participants_ratio",
        "Share of the previous window's authors who posted again in this one.",
        lambda w: w.returning_participants_ratio,
    ),
    (
        "forum_thread_participants_avg",
        "Mean distinct authors per thread started in the window.",
        lambda w: w.thread_participants_avg,
    ),
    (
        "forum_thread_replies_avg",
        "Mean replies per thread started in the window.",
        lambda w: w.thread_replies_avg,
    ),
    (
        "forum_unanswered_threads_ratio",
        "Share of threads started in the window, older than the grace period, with no reply.",
        lambda w: w.unanswered_threads_ratio,
    ),
    (
        "forum_first_reply_median_seconds",
        "Median time from thread start to first reply, threads started in the window.",
        lambda w: w.first_reply_median_seconds,
    ),
    (
        "forum_sentiment_mean",
        "Mean VADER compound sentiment of posts in the window, in [-1, 1].",
        lambda w: w.sentiment_mean,
    ),
    (
        "forum_sentiment_negative_ratio",
        "Share of scored posts in the window that are negative.",
        lambda w: w.sentiment_negative_ratio,
    ),
]


def _window_metrics(snapshots: list[CommunitySnapshot]) -> Iterator[Metric]:
    labels = ["community", "source", "window"]
    for name, documentation, pick in WINDOW_GAUGES:
        family = GaugeMetricFamily(name, documentation, labels=labels)
        for snapshot in snapshots:
            for window, activity in snapshot.windows.items():
                value = pick(activity)
                if value is not None:
                    family.add_metric([snapshot.community, snapshot.source, window], value)
        yield family


def _keyword_metrics(snapshots: list[CommunitySnapshot]) -> Iterator[Metric]:
    labels = ["community", "source", "window", "keyword_group"]
    posts = GaugeMetricFamily(
        "forum_keyword_posts", "Posts in the window matching a keyword group.", labels=labels
    )
    mood = GaugeMetricFamily(
        "forum_keyword_sentiment_mean",
        "Mean sentiment of the posts in the window matching a keyword group.",
        labels=labels,
    )
    for snapshot in snapshots:
        for window, activity in snapshot.windows.items():
            for group, found in activity.keywords.items():
                key = [snapshot.community, snapshot.source, window, group]
                posts.add_metric(key, found.posts)
                if found.sentiment_mean is not None:
                    mood.add_metric(key, found.sentiment_mean)
    yield posts
    yield mood


def _trend_metrics(snapshots: list[CommunitySnapshot]) -> Iterator[Metric]:
    change = GaugeMetricFamily(
        "forum_activity_change_ratio",
        "Recent value over its baseline (1.0 = normal); absent while the baseline is short "
        "or coverage is low.",
        labels=["community", "source", "signal", "window"],
    )
    onset = GaugeMetricFamily(
        "forum_changepoint_timestamp_seconds",
        "Onset of the latest detected level shift (Unix time).",
        labels=["community", "source", "signal"],
    )
    shift = GaugeMetricFamily(
        "forum_changepoint_shift_ratio",
        "Level after over level before the latest detected shift.",
        labels=["community", "source", "signal"],
    )
    score = GaugeMetricFamily(
        "forum_decline_score",
        "How far the last 3 and 10 days sit below the baseline, in alarm units: above 1 is a "
        "decline; absent while coverage is low.",
        labels=["community", "source", "signal"],
    )
    score_onset = GaugeMetricFamily(
        "forum_decline_onset_timestamp_seconds",
        "The day the decline behind forum_decline_score began (Unix time): the drop of the "
        "latest change point when that started it, else the first of the run of low days.",
        labels=["community", "source", "signal"],
    )
    for snapshot in snapshots:
        for decline in snapshot.declines:
            key = [snapshot.community, snapshot.source, decline.signal]
            score.add_metric(key, decline.score)
            score_onset.add_metric(key, decline.onset)
        for trend in snapshot.trends:
            change.add_metric(
                [snapshot.community, snapshot.source, trend.signal, trend.window], trend.ratio
            )
        for point in snapshot.changepoints:
            key = [snapshot.community, snapshot.source, point.signal]
            onset.add_metric(key, point.onset)
            shift.add_metric(key, point.shift_ratio)
    yield change
    yield onset
    yield shift
    yield score
    yield score_onset


def _coverage_metrics(snapshots: list[CommunitySnapshot]) -> Iterator[Metric]:
    coverage = GaugeMetricFamily(
        "forum_coverage_ratio",
        "Share of the window covered by successful polls.",
        labels=["community", "source", "window"],
    )
    last_post = GaugeMetricFamily(
        "forum_last_post_timestamp_seconds",
        "Creation time of the newest stored post (Unix time).",
        labels=["community", "source"],
    )
    for snapshot in snapshots:
        for window, ratio in snapshot.coverage.items():
            coverage.add_metric([snapshot.community, snapshot.source, window], ratio)
        if snapshot.last_post_at is not None:
            last_post.add_metric([snapshot.community, snapshot.source], snapshot.last_post_at)
    yield coverage
    yield last_post


def community_families(snapshots: list[CommunitySnapshot]) -> Iterator[Metric]:
    """Every community family over ``snapshots``, in a fixed order, empty ones included."""
    yield from _window_metrics(snapshots)
    yield from _keyword_metrics(snapshots)
    yield from _trend_metrics(snapshots)
    yield from _coverage_metrics(snapshots)


HEADERS = tuple(header for header, _ in exposition.render(list(community_families([]))))


def render_community(snapshot: CommunitySnapshot) -> tuple[bytes, ...]:
    """One community's sample lines of every family, in the order of ``HEADERS``."""
    return tuple(lines for _, lines in exposition.render(list(community_families([snapshot]))))


class CommunityCollector(Collector):
    """The community families: as metric objects for the registry (``collect``), and as the
    text of /metrics (``exposition``), in which each community's part is rendered once per
    snapshot, when the snapshot is installed, not at every scrape."""

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots
        self._lock = threading.Lock()
        self._rendered: dict[str, tuple[CommunitySnapshot, tuple[bytes, ...]]] = {}
        snapshots.on_install(self._render)

    def collect(self) -> Iterator[Metric]:
        yield from community_families(sorted(self._snapshots.all(), key=lambda s: s.community))

    def _render(self, snapshot: CommunitySnapshot) -> tuple[bytes, ...]:
        text = render_community(snapshot)
        with self._lock:
            self._rendered[snapshot.community] = (snapshot, text)
        return text

    def exposition(self) -> bytes:
        """The text ``generate_latest`` would write of ``collect()``."""
        snapshots = sorted(self._snapshots.all(), key=lambda s: s.community)
        with self._lock:
            rendered = dict(self._rendered)
        parts = []
        for snapshot in snapshots:
            found = rendered.get(snapshot.community)
            # installed before this collector subscribed, or swapped in since this read
            parts.append(found[1] if found and found[0] is snapshot else self._render(snapshot))
        if len(rendered) > len(snapshots):
            self._forget({s.community for s in snapshots})
        return exposition.join(HEADERS, parts)

    def _forget(self, keep: set[str]) -> None:
        with self._lock:
            for community in set(self._rendered) - keep:
                del self._rendered[community]
