"""Work after a poll, and scrape time, as the store's history grows.

Two stores with the same activity (10 communities, ~274 posts a day each) are
written directly with bulk inserts (this measures the store's size, not
ingest): 100k posts (36.5 days of history) and 1M posts (365 days). Then one
community receives 1,000 new posts through the real ingest path; the rollup of
the touched days and the recompute of that community's windows, trends and
coverage must take <= 1 s on the 1M store, and should cost about the same on
both (the work follows the new posts and the windows, not the history).
Scraping /metrics reads precomputed snapshots, so its time on the two stores
must stay within 20% of each other.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, insert

from monitor.analysis.rollups import DAY, day_of, refresh_days
from monitor.analysis.snapshot import Snapshots
from monitor.config import Settings, settings_from_mapping
from monitor.exporter import CommunityCollector
from monitor.ingest import AUTHORS, POSTS, THREADS, Ingestor
from monitor.sources.base import Batch, Envelope, Item
from monitor.store import db
from monitor.store.models import Community, PollState

COMMUNITIES = 10
NOW = 1_795_000_000


def settings_for(count: int) -> Settings:
    return settings_from_mapping(
        {
            "keywords": {"pay": ["pay cut"], "onboarding": ["unpaid onboarding"]},
            "communities": [
                {"id": f"c{n}", "source": "reddit", "subreddit": f"sub{n}"} for n in range(count)
            ],
        }
    )


POSTS_PER_DAY = 274


def fill(engine: Engine, *, posts: int, seed: int = 3) -> None:
    """``posts`` posts in COMMUNITIES communities at POSTS_PER_DAY, 20 posts a thread."""
    chance = random.Random(seed)
    per_community = posts // COMMUNITIES
    history_days = per_community / POSTS_PER_DAY
    with db.session_scope(engine) as session:
        for n in range(COMMUNITIES):
            community = f"c{n}"
            session.add(Community(id=community, source="reddit", created_at=NOW))
            session.add(PollState(community_id=community))
            session.flush()
            authors = [
                {
                    "community_id": community,
                    "pseudonym": f"{n}-{a:05d}",
                    "first_seen": NOW,
                    "last_seen": NOW,
                }
                for a in range(3000)
            ]
            session.execute(insert(AUTHORS), authors)
            first_author = (
                session.connection()
                .exec_driver_sql("SELECT min(id) FROM authors WHERE community_id = ?", (community,))
                .scalar()
            )
            step = DAY / POSTS_PER_DAY
            rows: list[dict[str, Any]] = []
            threads: list[dict[str, Any]] = []
            for p in range(per_community):
                created = int(NOW - history_days * DAY + p * step)
                thread = f"t{p // 20}"
                kind = "thread" if p % 20 == 0 else "reply"
                author = first_author + chance.randrange(3000)
                if kind == "thread":
                    threads.append(
                        {
                            "community_id": community,
                            "external_id": thread,
                            "author_id": author,
                            "created_at": created,
                            "reply_count": 19,
                            "first_reply_at": int(created + step),
                            "last_activity_at": created,
                        }
                    )
                rows.append(
                    {
                        "community_id": community,
                        "external_id": f"p{p}",
                        "thread_external_id": thread,
                        "parent_external_id": None,
                        "kind": kind,
                        "author_id": author,
                        "created_at": created,
                        "edited_at": None,
                        "deleted": False,
                        "sentiment": chance.uniform(-1, 1),
                        "keyword_groups": "pay" if p % 17 == 0 else "",
                        "content_hash": "",
                        "url": None,
                        "body": None,
                        "body_expires_at": None,
                        "fetched_at": NOW,
                    }
                )
                if len(rows) == 20000:
                    session.execute(insert(POSTS), rows)
                    rows.clear()
            if rows:
                session.execute(insert(POSTS), rows)
            session.execute(insert(THREADS), threads)
            days = {
                day_of(int(NOW - history_days * DAY + d * DAY))
                for d in range(int(history_days) + 2)
            }
            refresh_days(session, community_id=community, days=days, now=NOW)


def new_posts(count: int) -> list[Item]:
    return [
        Item(
            external_id=f"new{n}",
            kind="reply" if n % 10 else "thread",
            thread_id=f"newt{n // 10}",
            created_at=NOW + n,
            author=f"newcomer{n % 97}",
            text="the pay cut hurts, unpaid onboarding again" if n % 3 else "thanks, great",
        )
        for n in range(count)
    ]


def after_poll_seconds(engine: Engine, settings: Settings) -> float:
    """Ingest 1,000 posts into c0; time the rollup of the touched days and the recompute
    of c0's windows, trends and coverage."""
    community = settings.communities[0]
    ingestor = Ingestor(settings=settings, key=b"scale-bench-key-0123")
    snapshots = Snapshots(settings=settings, engine=engine)
    now = NOW + 2000
    batch = Batch(
        envelopes=[Envelope("c0", "reddit", now, item) for item in new_posts(1000)],
        cursor={},
        validators={},
        requests=1,
        not_modified=False,
    )
    with db.session_scope(engine) as session:
        result = ingestor.ingest(session, community=community, batch=batch, started_at=now, now=now)
        started = time.perf_counter()  # scoring and upserting are ingest's cost, not this
        refresh_days(session, community_id="c0", days=result.touched_days, now=now)
    snapshots.refresh(community, now=now)
    return time.perf_counter() - started


def collector_registry(engine: Engine, settings: Settings) -> CollectorRegistry:
    snapshots = Snapshots(settings=settings, engine=engine)
    for community in settings.communities:
        snapshots.refresh(community, now=NOW)
    registry = CollectorRegistry()
    registry.register(CommunityCollector(snapshots))
    return registry


def scrape_medians(registries: list[CollectorRegistry], *, rounds: int = 300) -> list[float]:
    """Median scrape time of each registry, scraped in turn so load weighs on all alike."""
    timings: list[list[float]] = [[] for _ in registries]
    for _ in range(rounds):
        for registry, found in zip(registries, timings, strict=True):
            started = time.perf_counter()
            generate_latest(registry)
            found.append(time.perf_counter() - started)
    return [statistics.median(found) for found in timings]


def main() -> bool:
    with tempfile.TemporaryDirectory() as folder:
        settings = settings_for(COMMUNITIES)
        engines, registries, work = [], [], []
        for posts in (100_000, 1_000_000):
            engine = db.make_engine(f"sqlite:///{Path(folder) / f'scale-{posts}.db'}")
            db.upgrade(engine)
            fill(engine, posts=posts)
            registries.append(collector_registry(engine, settings))
            engines.append(engine)
        small_scrape, large_scrape = scrape_medians(registries)
        for engine in engines:
            work.append(after_poll_seconds(engine, settings))
            engine.dispose()
    small_work, large_work = work
    scrape_ratio = large_scrape / small_scrape
    work_ok = large_work <= 1.0
    scrape_ok = 0.8 <= scrape_ratio <= 1.2
    print(f"store scale (10 communities, {POSTS_PER_DAY} posts a day each; SQLite)")
    print(f"  1,000 new posts -> rollup + windows, 100k store  {small_work:7.3f} s  (baseline)")
    print(
        f"  1,000 new posts -> rollup + windows, 1M store    {large_work:7.3f} s"
        f"   ratio {large_work / small_work:.2f}; target <= 1 s  {'PASS' if work_ok else 'FAIL'}"
    )
    print(f"  /metrics scrape, 100k store   {small_scrape * 1000:7.2f} ms (baseline)")
    print(
        f"  /metrics scrape, 1M store     {large_scrape * 1000:7.2f} ms   ratio "
        f"{scrape_ratio:.2f}  target within 20%  {'PASS' if scrape_ok else 'FAIL'}"
    )
    return work_ok and scrape_ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
