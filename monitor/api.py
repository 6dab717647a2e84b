"""The ASGI app: /metrics, /healthz, /readyz, the status page at /, the JSON API under /api/v1.

Everything reads the precomputed snapshots (``monitor.analysis.snapshot``);
nothing here queries the store. Bad parameters are 4xx with a message naming
the parameter, never a 500. /docs is a server-rendered reference of the
OpenAPI schema (no CDN), /openapi.json the schema itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from monitor import __version__, exposition
from monitor.analysis.snapshot import SERIES_DAYS, DayActivity, activity_known, ranking_rules
from monitor.analysis.terms import MAX_RECENT_DAYS, term_label
from monitor.analysis.windows import WINDOWS, WindowActivity
from monitor.config import CommunityBase
from monitor.service import Service
from monitor.web.apidocs import render_api_docs
from monitor.web.auth import BasicAuthUsers, RequireBasicAuth
from monitor.web.headers import HeadAsGet, SecurityHeaders
from monitor.web.status import Order, SortBy, render_community_page, render_status_page
from monitor.web.view import CommunityView, Presentation, community_view

log = logging.getLogger(__name__)

MAX_ECHOED = 80
"""A refused value is quoted back at most this long."""
MAX_KNOWN_LISTED = 5
"""A 404 for an unknown community names at most this many known ones."""
MAX_SERIES_DAYS = SERIES_DAYS
"""The snapshots hold this many complete days; ``days`` may not ask for more."""


class Signal(StrEnum):
    """Daily series of a community (one value per complete UTC day)."""

    posts = "posts"
    threads_started = "threads_started"
    replies = "replies"
    active_participants = "active_participants"
    new_participants = "new_participants"
    sentiment_mean = "sentiment_mean"
    negative_ratio = "negative_ratio"


def _value(day: DayActivity, signal: Signal) -> float | None:
    if not activity_known(day.coverage):
        return None
    value = getattr(day, signal.value)
    return None if value is None else float(value)


class WindowModel(BaseModel):
    posts: int
    threads_started: int
    active_participants: int
    new_participants: int
    returning_participants_ratio: float | None
    thread_participants_avg: float | None
    thread_replies_avg: float | None
    unanswered_threads_ratio: float | None
    first_reply_median_seconds: float | None
    sentiment_mean: float | None
    sentiment_negative_ratio: float | None
    keyword_posts: dict[str, int]


class TrendModel(BaseModel):
    signal: str
    window: str
    ratio: float = Field(description="recent level / 4-week baseline (1.0 = as usual)")


class ChangePointModel(BaseModel):
    signal: str
    onset: int = Field(description="Unix time of the onset day")
    shift_ratio: float = Field(description="level after / level before")


class ConditionModel(BaseModel):
    alert: str = Field(description="the alert rule whose condition holds now")
    severity: str
    summary: str


class EventModel(BaseModel):
    at: int
    label: str


class CommunityModel(BaseModel):
    id: str
    source: str
    status: str = Field(
        description="down, declining, growing, steady or warming up; a community without "
        'analysis has only id and source filled in, and is "warming up" while its first '
        'analysis is still to come (after a start) or "not analysed" when that failed (the '
        "store could not be read: see the service log)"
    )
    computed_at: int | None
    last_success_at: int | None
    last_error: str | None
    last_post_at: int | None
    windows: dict[str, WindowModel | None] = Field(
        description="by window: 1d, 7d, 28d; null while no successful poll covered any of the "
        "window (its activity is unknown, not zero)"
    )
    coverage: dict[str, float] = Field(description="share of each window covered by polls")
    trends: list[TrendModel]
    changepoints: list[ChangePointModel]
    out_of_line: list[ConditionModel]
    events: list[EventModel] = Field(description="labelled events (the demo's, when simulated)")
    authors_counted_since: int | None = Field(
        description="Unix time from which every author is counted anew: a new pseudonym key "
        "was accepted then (--accept-new-key), so participant counts before and after do not "
        "link; null when the key never changed"
    )


class CommunitiesModel(BaseModel):
    simulated: bool = Field(description="true when the data is the demo's simulation")
    generated_at: int
    communities: list[CommunityModel]


class SeriesPoint(BaseModel):
    day: str = Field(description="the UTC day, ISO 8601 (YYYY-MM-DD)")
    timestamp: int = Field(description="Unix time of the day's UTC midnight")
    value: float | None = Field(
        description="null when the day has no data for the signal, or no successful poll "
        "covered any of it"
    )
    coverage: float = Field(description="share of the day covered by successful polls")


class SeriesModel(BaseModel):
    community: str
    signal: Signal
    days: int
    simulated: bool
    points: list[SeriesPoint]


class DestinationModel(BaseModel):
    community: str = Field(description="a watched community of the same platform namespace")
    ratio: float | None = Field(
        description="share of the departed participants active here in the window; 0 may "
        "mean fewer than min_authors; null when not even that can be said"
    )
    moved: int | None = Field(description="departed participants active here (>= min_authors)")
    shared: int | None = Field(
        description="participants active in both in the window (>= min_authors)"
    )


class FlowWindowModel(BaseModel):
    window: str
    namespace: str = Field(description="the platform namespace the pairs are drawn from")
    departed: int | None = Field(
        description="participants active in the previous window and not in this one; null "
        "when fewer than min_authors"
    )
    destinations: list[DestinationModel] = Field(description="most movers first")


class FlowsModel(BaseModel):
    community: str
    simulated: bool
    min_authors: int = Field(description="k: no count below it is shown (flow_min_authors)")
    windows: list[FlowWindowModel] = Field(
        description="empty when the community's source has no namespace (feeds) or it is "
        "not analysed yet"
    )


class ErrorModel(BaseModel):
    detail: str


MAX_TERMS_LISTED = 50


class TermModel(BaseModel):
    term: str = Field(description="a word or two-word phrase, lower-case")
    count: int = Field(description="posts holding the term in the last `days` days")
    baseline_rate: float = Field(
        description="share of the baseline's posts that held it (0 when unseen, or used by "
        "fewer than k authors)"
    )
    expected: float = Field(description="posts expected to hold it at the baseline rate")
    score: float = Field(description="Poisson log-likelihood surprise; larger rises more")


class TermsModel(BaseModel):
    community: str
    days: int
    baseline_days: int = Field(description="days before the recent window compared against")
    simulated: bool
    terms: list[TermModel] = Field(description="rising terms, best first")


def _integer_schema(low: int, high: int, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "default": default}


def _bounded_int(name: str, raw: str, *, low: int, high: int) -> int:
    """``raw`` as a whole number in [low, high], or a 400 naming the parameter."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        shown = repr(raw[:MAX_ECHOED])
        raise HTTPException(
            status_code=400,
            detail=f"{name}: must be a whole number from {low} to {high}; got {shown}",
        )
    return int(text)


def _window_model(window: WindowActivity) -> WindowModel:
    return WindowModel(
        posts=window.posts,
        threads_started=window.threads_started,
        active_participants=window.active_participants,
        new_participants=window.new_participants,
        returning_participants_ratio=window.returning_participants_ratio,
        thread_participants_avg=window.thread_participants_avg,
        thread_replies_avg=window.thread_replies_avg,
        unanswered_threads_ratio=window.unanswered_threads_ratio,
        first_reply_median_seconds=window.first_reply_median_seconds,
        sentiment_mean=window.sentiment_mean,
        sentiment_negative_ratio=window.sentiment_negative_ratio,
        keyword_posts={group: found.posts for group, found in window.keywords.items()},
    )


def _community_model(view: CommunityView) -> CommunityModel:
    snap = view.snapshot
    if snap is None:
        return CommunityModel(
            id=view.id,
            source=view.source,
            status=view.verdict,
            computed_at=None,
            last_success_at=None,
            last_error=None,
            last_post_at=None,
            windows={},
            coverage={},
            trends=[],
            changepoints=[],
            out_of_line=[],
            events=[EventModel(at=a.at, label=a.label) for a in view.annotations],
            authors_counted_since=view.authors_counted_since,
        )
    return CommunityModel(
        id=snap.community,
        source=snap.source,
        status=view.verdict,
        computed_at=snap.computed_at,
        last_success_at=snap.last_success_at,
        last_error=snap.last_error,
        last_post_at=snap.last_post_at,
        windows={
            name: _window_model(snap.windows[name]) if name in snap.windows else None
            for name in WINDOWS
        },
        coverage=dict(snap.coverage),
        trends=[TrendModel(signal=t.signal, window=t.window, ratio=t.ratio) for t in snap.trends],
        changepoints=[
            ChangePointModel(signal=c.signal, onset=c.onset, shift_ratio=c.shift_ratio)
            for c in snap.changepoints
        ],
        out_of_line=[
            ConditionModel(alert=c.alert, severity=c.severity, summary=c.summary)
            for c in view.conditions
        ],
        events=[EventModel(at=a.at, label=a.label) for a in view.annotations],
        authors_counted_since=view.authors_counted_since,
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("query", "path")]
        name = ".".join(location) or "request"
        parts.append(f"{name}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    service: Service,
    *,
    schedule: bool = True,
    presentation: Presentation | None = None,
    clock: Callable[[], float] = time.time,
    users: BasicAuthUsers | None = None,
) -> FastAPI:
    """The app around ``service``; its lifespan opens the store, schedules polls and stops them.

    With ``users``, every path but /healthz and /readyz needs HTTP basic authentication.
    """
    shown = presentation or Presentation()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not service.is_open:  # ``forum-monitor serve`` opens it before it announces
            await service.open()
        if schedule:
            service.schedule()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="forum-monitor",
        version=__version__,
        description="Community health of public discussion forums, as Prometheus metrics "
        "and JSON."
        + (" This instance serves simulated data (the demo)." if shown.simulated else ""),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    # added last = outermost: a HEAD answer and a 401 carry the security headers too
    if users is not None:
        app.add_middleware(RequireBasicAuth, users=users)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Routing's own 404 and 405 name what they refuse, as every other 4xx does."""
        detail = exc.detail
        if exc.status_code == 405:
            detail = f"method: {request.method} is not allowed here; use GET or HEAD"
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"path: nothing at {request.url.path[:MAX_ECHOED]!r}; see /docs"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": _validation_message(exc), "errors": jsonable_errors(exc)}, status_code=422
        )

    def view_of(community: CommunityBase, *, now: int) -> CommunityView:
        snapshots = service.snapshots
        return community_view(
            community,
            snapshots.get(community.id) if snapshots is not None else None,
            presentation=shown,
            now=now,
            authors_counted_since=service.authors_counted_anew_since,
            analysis_pending=service.analysis_pending(community.id),
        )

    def views() -> list[CommunityView]:
        now = int(clock())
        return [view_of(community, now=now) for community in service.active_communities()]

    def one_view(community_id: str) -> CommunityView:
        """Only this community's view: the cost does not grow with the number watched."""
        community = service.active_community(community_id)
        if community is not None:
            return view_of(community, now=int(clock()))
        raise HTTPException(status_code=404, detail=unknown_community(community_id))

    def unknown_community(community_id: str) -> str:
        ids = service.active_ids()
        known = ", ".join(ids[:MAX_KNOWN_LISTED]) or "none"
        if len(ids) > MAX_KNOWN_LISTED:
            known += f", ... ({len(ids)} in all)"
        shown_id = repr(community_id[:MAX_ECHOED]) + ("..." if community_id[MAX_ECHOED:] else "")
        return f"community_id: no community {shown_id}; known: {known}"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page(
        sort: Annotated[SortBy, Query(description="the column to sort by")] = SortBy.status,
        order: Annotated[Order | None, Query(description="asc or desc")] = None,
    ) -> HTMLResponse:
        page = render_status_page(
            views(),
            presentation=shown,
            now=int(clock()),
            version=__version__,
            authors_counted_since=service.authors_counted_anew_since,
            sort=sort,
            order=order,
        )
        return HTMLResponse(page)

    @app.get("/community/{community_id}", response_class=HTMLResponse, include_in_schema=False)
    def community_page(community_id: str) -> HTMLResponse:
        page = render_community_page(
            one_view(community_id),
            presentation=shown,
            now=int(clock()),
            version=__version__,
            authors_counted_since=service.authors_counted_anew_since,
        )
        return HTMLResponse(page)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return HTMLResponse(render_api_docs(app.openapi()))

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        body, coding = exposition.encode(
            service.exposition(), accept_encoding=request.headers.get("accept-encoding", "")
        )
        headers = {"Vary": "Accept-Encoding"}
        if coding is not None:
            headers["Content-Encoding"] = coding
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=headers)

    @app.get("/healthz", summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Migrations ran and the scheduler runs")
    def readyz() -> JSONResponse:
        checks = {
            "migrations": service.migrated,
            "scheduler": service.scheduler is not None and service.scheduler.running,
        }
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/api/v1/communities",
        response_model=CommunitiesModel,
        summary="Every watched community: windows, trends, what is out of line",
        description="One entry per enabled community with its latest analysis. `out_of_line` "
        "lists the alert rules' conditions that hold now; `status` sums them up.",
    )
    def communities() -> CommunitiesModel:
        return CommunitiesModel(
            simulated=shown.simulated,
            generated_at=int(clock()),
            communities=[_community_model(v) for v in views()],
        )

    @app.get(
        "/api/v1/communities/{community_id}",
        response_model=CommunityModel,
        responses={404: {"model": ErrorModel, "description": "Unknown community"}},
        summary="One community",
    )
    def community(
        community_id: Annotated[str, Path(description="the community's configured id")],
    ) -> CommunityModel:
        return _community_model(one_view(community_id))

    @app.get(
        "/api/v1/communities/{community_id}/series",
        response_model=SeriesModel,
        responses={
            404: {"model": ErrorModel, "description": "Unknown community"},
            422: {"description": "Bad parameter (unknown signal, days out of range)"},
        },
        summary="A daily series of one community, with coverage",
        description=f"The last `days` complete UTC days (at most {MAX_SERIES_DAYS}), oldest "
        "first. Days not covered by successful polls have a low `coverage`; their values "
        "are incomplete (null when nothing of the day was covered) and the trends leave "
        "them out. A community not analysed yet has no points.",
    )
    def series(
        community_id: Annotated[str, Path(description="the community's configured id")],
        signal: Annotated[Signal, Query(description="which daily series")] = Signal.posts,
        days: Annotated[
            int,
            Query(ge=1, le=MAX_SERIES_DAYS, description="how many days, newest last"),
        ] = 90,
    ) -> SeriesModel:
        view = one_view(community_id)
        daily = view.snapshot.daily[-days:] if view.snapshot is not None else []
        return SeriesModel(
            community=view.id,
            signal=signal,
            days=len(daily),
            simulated=shown.simulated,
            points=[
                SeriesPoint(
                    day=datetime.fromtimestamp(d.day, UTC).date().isoformat(),
                    timestamp=d.day,
                    value=_value(d, signal),
                    coverage=d.coverage,
                )
                for d in daily
            ],
        )

    @app.get(
        "/api/v1/communities/{community_id}/flows",
        response_model=FlowsModel,
        responses={404: {"model": ErrorModel, "description": "Unknown community"}},
        summary="Where a community's departed participants went",
        description="Per window: participants active in the previous window and silent in "
        "this one, and the share of them active in each other watched community of the same "
        "platform namespace (never across platforms). Counted by keyed pseudonyms; no count "
        "below `min_authors` is shown.",
    )
    def flows(
        community_id: Annotated[str, Path(description="the community's configured id")],
    ) -> FlowsModel:
        view = one_view(community_id)
        found = view.snapshot.flows if view.snapshot is not None else []
        return FlowsModel(
            community=view.id,
            simulated=shown.simulated,
            min_authors=service.settings.flow_min_authors,
            windows=[
                FlowWindowModel(
                    window=f.window,
                    namespace=f.namespace,
                    departed=f.departed,
                    destinations=[
                        DestinationModel(
                            community=d.community, ratio=d.ratio, moved=d.moved, shared=d.shared
                        )
                        for d in f.destinations
                    ],
                )
                for f in found
            ],
        )

    @app.get(
        "/api/v1/communities/{community_id}/terms",
        response_model=TermsModel,
        responses={
            400: {"model": ErrorModel, "description": "Bad parameter (days or limit)"},
            404: {"model": ErrorModel, "description": "Unknown community"},
        },
        summary="What a community talks about more than before: its rising terms",
        description=f"Words and two-word phrases whose count in the last `days` days (today "
        f"included, at most {MAX_RECENT_DAYS}) rises most against the baseline before them, "
        "best first. Only terms at least k distinct authors used are ever counted, so no term "
        "points to one person; terms already common in the baseline are left out. Empty "
        "while terms are off or the community has no baseline yet.",
    )
    def terms(
        community_id: Annotated[str, Path(description="the community's configured id")],
        # read as text and checked here, so that a bad value is a 400 naming the parameter;
        # the schema still says what is accepted
        days: Annotated[
            str,
            Query(
                description=f"recent window in days, 1 to {MAX_RECENT_DAYS}",
                json_schema_extra=_integer_schema(1, MAX_RECENT_DAYS, 7),
            ),
        ] = "7",
        limit: Annotated[
            str,
            Query(
                description=f"terms listed at most, 1 to {MAX_TERMS_LISTED}",
                json_schema_extra=_integer_schema(1, MAX_TERMS_LISTED, 20),
            ),
        ] = "20",
    ) -> TermsModel:
        recent = _bounded_int("days", days, low=1, high=MAX_RECENT_DAYS)
        most = _bounded_int("limit", limit, low=1, high=MAX_TERMS_LISTED)
        view = one_view(community_id)
        history = view.snapshot.terms if view.snapshot is not None else None
        found = (
            history.rising(days=recent, limit=most, rules=ranking_rules(service.settings))
            if history is not None
            else []
        )
        return TermsModel(
            community=view.id,
            days=recent,
            baseline_days=service.settings.terms.baseline_days,
            simulated=shown.simulated,
            terms=[
                TermModel(
                    term=term_label(t.term),
                    count=t.count,
                    baseline_rate=t.baseline_rate,
                    expected=t.expected,
                    score=t.score,
                )
                for t in found
            ],
        )

    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The validation errors without their (possibly non-JSON) context objects."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
