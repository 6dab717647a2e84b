"""The HTTP server's guard against idle and half-open connections.

uvicorn closes a keep-alive connection that stays idle after a response, but a
connection that never sends a complete request head (nothing at all, half a
header, a byte now and then) stays open for ever, each holding a file
descriptor; enough of them and the polls fail with "Too many open files". The
guard adds two rules to uvicorn's HTTP/1.1 protocol (h11):

- **Header timeout.** A connection must deliver a complete request head within
  ``header_timeout`` of being accepted (its TLS handshake included) or of its
  previous response, or it is closed. Time spent answering a request is not
  counted.
- **Connection limit.** At most ``max_connections`` are open. One more closes
  the connection that has waited longest for a request head, so a flood of idle
  connections cannot lock out Prometheus or /healthz; when every connection is
  busy with a request, the new one is refused (503 on plain HTTP).

With TLS the handshake runs here too (``loop.start_tls``), so a connection that
never finishes its handshake counts and times out like any other.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any, ClassVar, Protocol

from uvicorn.protocols.http.h11_impl import H11Protocol

REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class Guarded(Protocol):
    """A connection as the guard sees it: it can be closed."""

    def close(self) -> None: ...


class ConnectionGuard:
    """Counts open connections and those waiting for a request head, oldest wait first."""

    def __init__(
        self, *, max_connections: int, header_timeout: float, tls: ssl.SSLContext | None = None
    ) -> None:
        if max_connections < 1 or not header_timeout > 0:
            raise ValueError("max_connections must be at least 1, header_timeout above 0")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.tls = tls
        self._open: set[Guarded] = set()
        self._waiting: dict[Guarded, float] = {}  # insertion order = the order they began waiting

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, connection: Guarded) -> bool:
        """Count ``connection``; at the limit, close the longest-waiting one to make room.
        False (the caller refuses it) when every open connection is busy with a request."""
        if len(self._open) >= self.max_connections:
            if not self._waiting:
                return False
            oldest = next(iter(self._waiting))
            self.closed(oldest)
            oldest.close()
        self._open.add(connection)
        return True

    def waiting(self, connection: Guarded) -> None:
        """``connection`` waits for a request head from now on."""
        self._waiting.pop(connection, None)
        self._waiting[connection] = time.monotonic()

    def busy(self, connection: Guarded) -> None:
        """``connection`` has a request in hand."""
        self._waiting.pop(connection, None)

    def closed(self, connection: Guarded) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)

    def close_waiting(self) -> None:
        """Close every connection that has no request in hand (the server is stopping)."""
        for connection in list(self._waiting):
            self.closed(connection)
            connection.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under a ``ConnectionGuard`` (set on a subclass, see ``bound``)."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._raw: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None  # held, or the loop may drop it
        self._early: list[bytes] = []

    @classmethod
    def bound(cls, guard: ConnectionGuard) -> type[GuardedH11Protocol]:
        """The protocol class for uvicorn's ``http`` setting, under ``guard``."""
        return type("GuardedH11Protocol", (cls,), {"guard": guard})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        if not self.guard.admit(self):
            if self.guard.tls is None:
                transport.write(REFUSED)
            transport.close()
            return
        self._begin_waiting()
        if self.guard.tls is None:
            super().connection_made(transport)
            return
        transport.pause_reading()  # the TLS layer reads from the first byte
        self._handshake = self.loop.create_task(self._start_tls(transport, self.guard.tls))

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        if transport.is_closing():  # closed by the guard before the handshake began
            self._forget()
            return
        try:
            secured = await self.loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.guard.header_timeout,
            )
        except OSError:  # a failed or timed-out handshake (SSLError too); start_tls closed it
            secured = None
        if secured is None or secured.is_closing():
            self._forget()
            return
        super().connection_made(secured)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            # the TLS layer hands on the first bytes (often the whole request) before
            # start_tls returns: keep them until uvicorn's side is set up
            self._early.append(data)
            return
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self.transport is not None:  # uvicorn's side was set up (after any TLS handshake)
            super().connection_lost(exc)

    def close(self) -> None:
        """Close the connection (the guard makes room, or its head did not come in time)."""
        self._forget()
        target = self.transport if self.transport is not None else self._raw
        if target is not None and not target.is_closing():
            target.close()

    def shutdown(self) -> None:
        self._forget()
        super().shutdown()

    def _follow_request(self) -> None:
        in_hand = self.cycle is not None and not self.cycle.response_complete
        if in_hand:
            self._end_waiting()
        elif self._deadline is None and not self.transport.is_closing():
            self._begin_waiting()

    def _begin_waiting(self) -> None:
        self.guard.waiting(self)
        self._deadline = self.loop.call_later(self.guard.header_timeout, self.close)

    def _end_waiting(self) -> None:
        self.guard.busy(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _forget(self) -> None:
        self._end_waiting()
        self.guard.closed(self)
