"""The HTTP server under every fake forum, with request logging and fault injection."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal[
    "status",  # answer ``status`` with ``body`` (and Retry-After when ``retry_after`` is set)
    "delay",  # sleep ``seconds`` before answering normally (a read timeout for the client)
    "reset",  # send headers and part of the body, then drop the connection
    "truncate",  # send only the first half of the real body, with a matching length
    "html",  # answer 200 with an HTML error page
    "huge",  # answer 200 with ``size`` bytes of JSON-looking filler
]


@dataclass
class FakeResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **headers: str) -> FakeResponse:
        return cls(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        )


@dataclass
class Fault:
    kind: FaultKind
    path_prefix: str = "/"
    count: int = 1
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    size: int = 10 * 1024 * 1024
    body: bytes = b""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float
    body: bytes = b""


Handler = Callable[[Request], FakeResponse]


class FakeForumServer:
    """Serves ``handler`` on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, handler: Handler, *, port: int = 0) -> None:
        self.handler = handler
        self.rewrite: Callable[[bytes], bytes] | None = None
        """Applied to every body the handler answers: a test's way to put on the wire what
        ``json.dumps`` never writes (a bare ``1e400``, an unpaired surrogate escape)."""
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        server = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes: avoid a 40 ms stall

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self)

            def do_POST(self) -> None:
                server._serve(self)

        self._httpd = _QuietServer(("127.0.0.1", port), _RequestHandler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeForumServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeForumServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def inject(self, fault: Fault) -> None:
        """Apply ``fault`` to the next ``fault.count`` requests under its path prefix."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def requests_to(self, path_prefix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        request = Request(
            method=http.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in http.headers.items()},
            at=time.time(),
            body=body,
        )
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(parts.path)
        try:
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
                fault = None
            if fault is None or fault.kind in ("reset", "truncate"):
                response = self.handler(request)
                if self.rewrite is not None:
                    response = FakeResponse(
                        response.status, self.rewrite(response.body), dict(response.headers)
                    )
            else:
                response = _fault_response(fault)
            if fault is not None and fault.kind == "reset":
                _send_head(http, response, len(response.body))
                http.wfile.write(response.body[: max(1, len(response.body) // 3)])
                http.wfile.flush()
                http.connection.shutdown(socket.SHUT_RDWR)
                http.close_connection = True
                return
            if fault is not None and fault.kind == "truncate":
                response.body = response.body[: len(response.body) // 2]
            _send_head(http, response, len(response.body))
            http.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            http.close_connection = True


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up (as clients under test do on purpose) is not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _fault_response(fault: Fault) -> FakeResponse:
    if fault.kind == "status":
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        return FakeResponse(fault.status, fault.body or b'{"error": "fault"}', headers)
    if fault.kind == "html":
        page = b"<!DOCTYPE html><html><body><h1>We're having trouble</h1></body></html>"
        return FakeResponse(200, page, {"Content-Type": "text/html; charset=utf-8"})
    if fault.kind == "huge":
        filler = b'{"filler": "' + b"x" * fault.size + b'"}'
        return FakeResponse(200, filler, {"Content-Type": "application/json"})
    raise ValueError(f"fault {fault.kind} has no response of its own")


def _send_head(http: BaseHTTPRequestHandler, response: FakeResponse, length: int) -> None:
    http.send_response(response.status)
    for name, value in response.headers.items():
        http.send_header(name, value)
    http.send_header("Content-Length", str(length))
    http.end_headers()


def query_value(
    query: Mapping[str, list[str]], name: str, default: str | None = None
) -> str | None:
    values = query.get(name)
    return values[0] if values else default


class Router:
    """Dispatch by exact path or by a path-matching predicate; 404 otherwise."""

    def __init__(self) -> None:
        self._routes: list[tuple[Callable[[str], bool], Handler]] = []

    def add(self, match: str | Callable[[str], bool], handler: Handler) -> None:
        predicate = (lambda path, exact=match: path == exact) if isinstance(match, str) else match
        self._routes.append((predicate, handler))

    def __call__(self, request: Request) -> FakeResponse:
        for predicate, handler in self._routes:
            if predicate(request.path):
                return handler(request)
        return FakeResponse.json({"error": "not found"}, status=404)
