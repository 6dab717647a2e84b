"""Serving the ASGI app under uvicorn: bind first, then open the service, then announce.

The listening socket is made here, before anything is said or opened, so a port
in use is one line naming the address, not a traceback after "serving on".
Every failure before the first request is a typed error the command prints as
one line (``ListenError``, ``DataDirError``, ``StoreError``); SIGTERM and Ctrl-C
stop the service gracefully and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import signal
import socket
import ssl
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from monitor.config import ServerSettings
from monitor.connections import ConnectionGuard, GuardedH11Protocol
from monitor.errors import ListenError, StartupError
from monitor.service import Service

BACKLOG = 2048
"""Connections the kernel queues before they are accepted (uvicorn's default)."""
MAX_REQUEST_HEAD_BYTES = 16 * 1024
"""A longer request line and headers are refused (h11's default, made explicit)."""


class GracefulServer(uvicorn.Server):
    """SIGTERM/SIGINT stop the service gracefully and the process exits 0.

    uvicorn re-raises the signal after shutting down, which makes the exit
    status "killed by SIGTERM"; a supervisor should see a clean stop. Connections
    still waiting for a request head (or a TLS handshake) are closed at once.
    """

    def __init__(self, config: uvicorn.Config, *, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.guard = guard

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.close_waiting()
        await super().shutdown(sockets)

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


def format_address(host: str, port: int) -> str:
    """HOST:PORT as a user writes it (``[::1]:9808`` for an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_FIXES = {
    errno.EADDRINUSE: (
        "address already in use",
        "another process listens there: stop it, or choose another --listen (or listen)",
    ),
    errno.EACCES: (
        "permission denied",
        "ports below 1024 need privileges: choose a port from 1024 up with --listen",
    ),
    errno.EADDRNOTAVAIL: (
        "not an address of this host",
        "listen on one of this host's addresses with --listen (127.0.0.1: this host only)",
    ),
}


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to; ``ListenError`` if any fails."""
    address = format_address(host, port)
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(
            address,
            f"unknown host ({exc.strerror})",
            fix="give an IP address or a name this host resolves with --listen",
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, sockaddr in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        detail, fix = _FIXES.get(
            exc.errno or 0, ((exc.strerror or str(exc)).lower(), "choose another --listen")
        )
        raise ListenError(address, detail, fix=fix) from None
    return sockets


def uvicorn_config(app: FastAPI, *, guard: ConnectionGuard) -> uvicorn.Config:
    """uvicorn's settings: the guarded h11 protocol (TLS, when any, runs inside it)."""
    return uvicorn.Config(
        app,
        http=GuardedH11Protocol.bound(guard),
        timeout_keep_alive=max(1, math.ceil(guard.header_timeout)),
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        server_header=False,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )


def serve(
    app: FastAPI,
    *,
    sockets: list[socket.socket],
    service: Service,
    limits: ServerSettings,
    announce: Callable[[], None],
    tls: ssl.SSLContext | None = None,
) -> None:
    """Open ``service``, then ``announce``, then serve on ``sockets`` until SIGTERM or Ctrl-C.

    The app's lifespan schedules the polls and, at the end, stops the service.
    """
    guard = ConnectionGuard(
        max_connections=limits.max_connections, header_timeout=limits.header_timeout, tls=tls
    )
    server = GracefulServer(uvicorn_config(app, guard=guard), guard=guard)

    async def main() -> None:
        try:
            await service.open()
        except BaseException:
            await service.stop()
            raise
        announce()
        try:
            await server.serve(sockets=sockets)
        finally:
            if not server.started:  # the lifespan did not start, so it will not stop it
                await service.stop()

    try:
        asyncio.run(main())
    except SystemExit as exc:
        if exc.code == STARTUP_FAILURE:
            raise StartupError("the service failed to start; the lines above say why") from None
        raise
    finally:
        for sock in sockets:
            sock.close()
