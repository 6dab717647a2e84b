"""Poll history is kept for POLL_HISTORY_DAYS; coverage, kept apart, outlives it."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlmodel import Session, col

from monitor.analysis.coverage import covered_spans
from monitor.config import settings_from_mapping
from monitor.ingest import Ingestor
from monitor.service import Service
from monitor.store.models import PollRun
from monitor.store.retention import POLL_HISTORY_DAYS
from tests.analysis import fixture as fx
from tests.support import service_config

DAY = 86400
NOW = fx.NOW


async def test_prune_drops_poll_runs_older_than_the_history_and_keeps_coverage(
    tmp_path: Path,
) -> None:
    """Daily polls of two communities for 90 days, one of them no longer configured:
    the runs of the last POLL_HISTORY_DAYS stay, older ones go, coverage is unchanged."""
    settings = settings_from_mapping(
        service_config(
            tmp_path,
            [
                {"id": "gig", "source": "reddit", "subreddit": "gig", "interval": "1d"},
                {"id": "gone", "source": "reddit", "subreddit": "gone", "interval": "1d"},
            ],
        )
    )
    service = Service(settings, registry=CollectorRegistry(), clock=lambda: float(NOW))
    service.prepare()
    engine = service.engine
    assert engine is not None
    ingestor = Ingestor(settings=settings, key=fx.KEY)
    first = NOW - 90 * DAY
    for community in ("gig", "gone"):
        fx.ingest(engine, ingestor, settings, community, [], now=first, since=first - DAY)
        for at in range(first + DAY, NOW + 1, DAY):
            fx.ingest(engine, ingestor, settings, community, [], now=at)
    with Session(engine) as session:
        spans_before = {c: covered_spans(session, community_id=c, since=0) for c in ("gig", "gone")}
    assert spans_before == {"gig": [(first - DAY, NOW)], "gone": [(first - DAY, NOW)]}

    # "gone" was removed from the config since: its history is pruned all the same
    service.settings = settings.model_copy(update={"communities": settings.communities[:1]})
    try:
        await service.prune()
        with Session(engine) as session:
            for community in ("gig", "gone"):
                started = session.execute(
                    select(col(PollRun.started_at)).where(col(PollRun.community_id) == community)
                ).scalars()
                assert sorted(started) == list(
                    range(NOW - POLL_HISTORY_DAYS * DAY, NOW + 1, DAY)
                ), community
            assert {
                c: covered_spans(session, community_id=c, since=0) for c in ("gig", "gone")
            } == spans_before
            kept = session.execute(select(func.count()).select_from(PollRun)).scalar()
            assert kept == 2 * (POLL_HISTORY_DAYS + 1)
    finally:
        await service.stop()
