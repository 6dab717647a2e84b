"""Running the ASGI app under uvicorn, with a clean exit on SIGTERM and Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class GracefulServer(uvicorn.Server):
    """SIGTERM/SIGINT stop the service gracefully and the process exits 0.

    uvicorn re-raises the signal after shutting down, which makes the exit
    status "killed by SIGTERM"; a supervisor should see a clean stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(app: FastAPI, *, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C; the app's lifespan stops the service."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    GracefulServer(config).run()
