"""Collector-health metrics (namespace ``forum_monitor_``), held per registry.

One ``Telemetry`` is created per service (and per test, with a fresh
``CollectorRegistry``) and handed to the HTTP client and the scheduler. Labels
are bounded: community ids and hosts come from the config, reasons and codes
from small fixed sets.

The families labelled by community are held by ``CommunityHealth``, which
renders a community's part of them again only after one of its series changed
(``monitor.exposition``); they are written to the same way as prometheus_client's
(``telemetry.polls.labels(community=..., source=...).inc()``). The per-host
families, a handful of series, are prometheus_client's own.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor import exposition

# ``*_created`` series double the series count and no dashboard or rule reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

POLL_BUCKETS = (0.5, 2, 10, 60, 300)
"""Enough for the dashboard's p50 and p95 of each community, at 8 series a community: a
quick request or two; a few; paging under a rate limit (anonymous Reddit spaces requests 6 s
apart); one slow request (the default ``total_timeout`` is 60 s); ``poll_deadline`` (5
minutes by default), past which a poll stops asking for more."""
DECLARED_FAILURE_REASONS = ("connect", "timeout", "http_5xx", "rate_limited", "malformed")
"""The failures that come and go, where one is the whole event: their series exist at zero
from the start, so ``rate()`` and ``increase()`` see the very first one. The other reasons
(a 4xx, a refused redirect, a body too large, the store, a bug) repeat at every poll until
someone fixes something; their series appear at the first failure, which those functions
do not count, and ``ForumSourceDown`` does not need them."""


Kind = Literal["counter", "gauge", "histogram"]


@dataclass(eq=False)
class Series:
    """One labelled series of a ``HealthFamily``: a counter's or gauge's value, or a
    histogram's observations per bucket and their sum."""

    family: HealthFamily
    community: str
    labels: tuple[str, ...]
    value: float = 0.0
    buckets: list[int] = field(default_factory=list)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.family.health.change(self, add=float(amount))

    def set(self, value: float) -> None:
        self.family.health.change(self, put=float(value))

    def observe(self, value: float) -> None:
        bounds = self.family.bounds
        # as prometheus_client: NaN is in no bucket (but in the sum)
        bucket = next((i for i, bound in enumerate(bounds) if value <= bound), -1)
        self.family.health.change(self, add=float(value), bucket=bucket)


@dataclass(eq=False)
class HealthFamily:
    """A counter, gauge or histogram whose first label is ``community``."""

    health: CommunityHealth
    index: int
    kind: Kind
    name: str
    documentation: str
    labelnames: tuple[str, ...]
    bounds: tuple[float, ...] = ()
    """A histogram's bucket upper bounds, +Inf last."""

    def labels(self, **labels: str) -> Series:
        """The series of these label values, created at zero the first time."""
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.labelnames)}")
        return self.health.series(self, tuple(str(labels[name]) for name in self.labelnames))

    def metric(self, series: Sequence[Series]) -> Metric:
        """This family with ``series`` as its samples."""
        labelnames = list(self.labelnames)
        if self.kind == "counter":
            counter = CounterMetricFamily(self.name, self.documentation, labels=labelnames)
            for one in series:
                counter.add_metric(list(one.labels), one.value)
            return counter
        if self.kind == "gauge":
            gauge = GaugeMetricFamily(self.name, self.documentation, labels=labelnames)
            for one in series:
                gauge.add_metric(list(one.labels), one.value)
            return gauge
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=labelnames)
        for one in series:
            cumulative, running = [], 0
            for bound, count in zip(self.bounds, one.buckets, strict=True):
                running += count
                le = floatToGoString(bound)  # type: ignore[no-untyped-call]
                cumulative.append((le, float(running)))
            histogram.add_metric(list(one.labels), cumulative, one.value)
        return histogram


class CommunityHealth(Collector):
    """The families labelled by community: metric objects for the registry (``collect``),
    and the text of /metrics (``exposition``), in which a community's part is rendered
    again only after one of its series changed."""

    def __init__(self) -> None:
        self.families: list[HealthFamily] = []
        self._lock = threading.Lock()
        self._series: dict[str, list[dict[tuple[str, ...], Series]]] = {}
        """By community (in the order they appeared), by family: its series in order."""
        self._version: dict[str, int] = {}
        """Per community: how many changes its series have seen."""
        self._rendered: dict[str, tuple[int, tuple[bytes, ...]]] = {}
        """Per community: its part of every family, and the version it was rendered at."""
        self._headers: tuple[bytes, ...] = ()

    def family(
        self,
        kind: Kind,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float] = (),
    ) -> HealthFamily:
        if not labelnames or labelnames[0] != "community":
            raise ValueError(f"{name}: the first label must be community")
        bounds = (*(float(b) for b in buckets), math.inf) if kind == "histogram" else ()
        with self._lock:
            if self._series:
                raise RuntimeError("declare every family before the first series")
            created = HealthFamily(
                self, len(self.families), kind, name, documentation, tuple(labelnames), bounds
            )
            self.families.append(created)
            empty = [family.metric([]) for family in self.families]
            self._headers = tuple(header for header, _ in exposition.render(empty))
        return created

    def series(self, family: HealthFamily, labels: tuple[str, ...]) -> Series:
        community = labels[0]
        with self._lock:
            by_family = self._series.get(community)
            if by_family is None:
                by_family = self._series[community] = [{} for _ in self.families]
            found = by_family[family.index].get(labels)
            if found is None:
                found = Series(family, community, labels, buckets=[0] * len(family.bounds))
                by_family[family.index][labels] = found
                self._version[community] = self._version.get(community, 0) + 1
            return found

    def change(
        self, series: Series, *, add: float = 0.0, put: float | None = None, bucket: int = -1
    ) -> None:
        with self._lock:
            series.value = put if put is not None else series.value + add
            if bucket >= 0:
                series.buckets[bucket] += 1
            self._version[series.community] += 1

    def describe(self) -> Iterator[Metric]:
        return (family.metric([]) for family in self.families)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            metrics = [
                family.metric(
                    [
                        _copy(one)
                        for by_family in self._series.values()
                        for one in by_family[family.index].values()
                    ]
                )
                for family in self.families
            ]
        return iter(metrics)

    def exposition(self) -> bytes:
        """The text ``generate_latest`` would write of ``collect()``."""
        with self._lock:  # copied, to render without holding up the pollers
            stale = [
                (community, version, [[_copy(s) for s in found.values()] for found in series])
                for community, series in self._series.items()
                if (version := self._version[community]) != self._rendered.get(community, (-1,))[0]
            ]
        for community, version, series in stale:
            metrics = [
                family.metric(found) for family, found in zip(self.families, series, strict=True)
            ]
            text = tuple(lines for _, lines in exposition.render(metrics))
            with self._lock:  # a scrape beside this one may have rendered a newer version
                if version > self._rendered.get(community, (-1,))[0]:
                    self._rendered[community] = (version, text)
        with self._lock:  # a community whose first series came during this scrape waits
            parts = [self._rendered[c][1] for c in self._series if c in self._rendered]
        return exposition.join(self._headers, parts)


def _copy(series: Series) -> Series:
    """A copy to render outside the lock, which mutators hold."""
    return Series(series.family, series.community, series.labels, series.value, [*series.buckets])


class _Collectors(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class Telemetry:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.health = CommunityHealth()
        health = self.health
        self.polls = health.family(
            "counter",
            "forum_monitor_polls",
            "Polls attempted, per community.",
            ["community", "source"],
        )
        self.poll_failures = health.family(
            "counter",
            "forum_monitor_poll_failures",
            "Polls that failed, by reason.",
            ["community", "source", "reason"],
        )
        self.poll_duration = health.family(
            "histogram",
            "forum_monitor_poll_duration_seconds",
            "Wall time of one poll of one community.",
            ["community", "source"],
            buckets=POLL_BUCKETS,
        )
        self.last_success = health.family(
            "gauge",
            "forum_monitor_last_success_timestamp_seconds",
            "When the community was last polled successfully (Unix time).",
            ["community"],
        )
        self.items_ingested = health.family(
            "counter",
            "forum_monitor_items_ingested",
            "Items written to the store (new or changed), by kind.",
            ["community", "source", "kind"],
        )
        self.items_rejected = health.family(
            "counter",
            "forum_monitor_items_rejected",
            "Items a source sent that could not be normalized (each counted once), by reason; "
            "the rest of their page is stored.",
            ["community", "source", "reason"],
        )
        self.source_up = health.family(
            "gauge",
            "forum_monitor_source_up",
            "1 if the last poll of the community succeeded, else 0.",
            ["community"],
        )
        self.poll_interval = health.family(
            "gauge",
            "forum_monitor_poll_interval_seconds",
            "Configured poll interval of the community (for staleness rules).",
            ["community"],
        )
        registry.register(health)
        self.http_requests = Counter(
            "forum_monitor_http_requests",
            "HTTP requests sent to sources, by host and status code ('other' for a status "
            "outside a fixed set, 'error' when none came).",
            ["host", "code"],
            registry=registry,
        )
        self.rate_limit_remaining = Gauge(
            "forum_monitor_rate_limit_remaining",
            "Requests the host says are left in its current rate-limit window.",
            ["host"],
            registry=registry,
        )
        self._per_host = _Collectors(self.http_requests, self.rate_limit_remaining)

    def exposition(self) -> bytes:
        """Every family of this Telemetry in the text format, as ``generate_latest`` of
        its registry would write them."""
        return self.health.exposition() + generate_latest(self._per_host)

    def declare_community(self, community: str, source: str, *, interval: float) -> None:
        """Make a community's series exist at zero before its first poll."""
        self.poll_interval.labels(community=community).set(interval)
        for reason in DECLARED_FAILURE_REASONS:
            self.poll_failures.labels(community=community, source=source, reason=reason)
        self.polls.labels(community=community, source=source)
        self.poll_duration.labels(community=community, source=source)
        # a first poll's items (a backfill of history_days) are counted too
        for kind in ("thread", "reply"):
            self.items_ingested.labels(community=community, source=source, kind=kind)
        # rejected items are rare and logged one by one: theirs appear at the first
