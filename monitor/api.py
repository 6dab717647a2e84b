"""The ASGI app: /metrics, /healthz, /readyz (and later the status page and JSON API)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor import __version__
from monitor.service import Service

log = logging.getLogger(__name__)


def create_app(service: Service, *, schedule: bool = True) -> FastAPI:
    """The app around ``service``; its lifespan opens the store, schedules polls and stops them."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
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
        description="Community health of public discussion forums, as Prometheus metrics.",
        lifespan=lifespan,
    )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

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

    return app
