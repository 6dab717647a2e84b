"""``forum-monitor report``: one community's evidence report, a self-contained HTML file.

``evidence`` reads what the report states from the store (no network), ``document``
renders it (sections, inline CSS and SVG charts shared with the status page, no
script), ``power`` holds the decline benchmark's measured rows that the methods quote.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session

from monitor.config import Settings
from monitor.errors import ForumMonitorError
from monitor.report.document import ReportContext, render_report
from monitor.report.evidence import gather, has_polls, period_flows, period_rising_terms
from monitor.store import db


class ReportError(ForumMonitorError):
    """The report cannot be made or written (no store, nothing polled, unwritable file)."""


@dataclass(frozen=True)
class ReportSummary:
    days: int
    counted_days: int
    changes: int
    gaps: int
    size: int
    """Bytes written."""


def write_report(
    *,
    settings: Settings,
    community_id: str,
    since: int,
    until: int,
    out: Path,
    now: int,
    command: str,
    version: str,
) -> ReportSummary:
    """Write the report on ``community_id`` over UTC days ``[since, until)`` to ``out``
    (whole or not at all). The community must be configured (the caller checks)."""
    community = next(c for c in settings.communities if c.id == community_id)
    url = settings.resolved_database_url()
    engine = db.make_engine(url)
    try:
        if db.current_revision(engine) is None:
            raise ReportError(
                f"{db.describe_url(url)} holds no forum-monitor store (run `forum-monitor db "
                "upgrade` and poll first)"
            )
        with Session(engine) as session:
            if not has_polls(session, community_id):
                raise ReportError(
                    f"the store holds no successful poll of {community_id!r}: poll it first "
                    "(forum-monitor poll-once or backfill)"
                )
            evidence = gather(
                session,
                community=community,
                since=since,
                until=until,
                now=now,
                store=db.describe_url(url),
                command=command,
            )
            flows_end = min(until, now)
            evidence = dataclasses.replace(
                evidence,
                flows=period_flows(
                    session, settings=settings, community=community, until=flows_end
                ),
                flows_at=flows_end,
                rising_terms=period_rising_terms(
                    session, settings=settings, community=community, until=until
                ),
            )
            page = render_report(ReportContext(evidence, session, version))
    finally:
        engine.dispose()
    data = page.encode("utf-8")
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, out)
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return ReportSummary(
        days=len(evidence.daily),
        counted_days=len(evidence.counted_days),
        changes=len(evidence.changes),
        gaps=len(evidence.gaps),
        size=len(data),
    )
