"""Idle and half-open clients cannot exhaust the service's file descriptors: the service as
a user runs it, flooded on 127.0.0.1, its own descriptors counted in /proc/<pid>/fd."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from monitor.connections import ConnectionGuard
from tests.support import free_port, serve_argv


class Service:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process, self.port = process, port
        self.base_url = f"http://127.0.0.1:{port}"

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Service]]:
    """Start ``serve`` with the given ``[server]`` table; ready when /readyz answers."""
    started: list[subprocess.Popen[str]] = []
    log = (tmp_path / "stderr.log").open("w")

    def run(server_table: str) -> Service:
        config = tmp_path / "config.toml"
        config.write_text(
            f'pseudonym_key = "test-key-0123456789abcdef-0123456789"\n'
            f'database_url = "sqlite:///{tmp_path / "store.db"}"\n[server]\n{server_table}\n'
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
        process = subprocess.Popen(
            serve_argv(config, port),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env=env,
        )
        started.append(process)
        service = Service(process, port)
        wait_until(lambda: answers(service.base_url + "/readyz"), what="the service to be ready")
        return service

    try:
        yield run
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], bool], *, what: str, limit: float = 60.0) -> None:
    """Poll ``condition``; the limit only ends a test that would otherwise hang."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {limit:.0f} s"
        time.sleep(0.1)


def closed_by_server(client: socket.socket) -> bool:
    """True once the server has closed ``client`` (EOF or reset), without blocking."""
    client.setblocking(False)
    try:
        return client.recv(1024) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


HALF_OPEN: list[bytes] = [
    b"",  # connects and says nothing
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # a head without its final blank line
    b"G",  # one byte
]


def test_connections_without_a_complete_request_head_are_closed_after_the_timeout(
    start: Callable[[str], Service],
) -> None:
    service = start('header_timeout = "1s"')
    baseline = service.descriptors()
    clients = []
    for index in range(30):
        client = socket.create_connection(("127.0.0.1", service.port))
        client.sendall(HALF_OPEN[index % len(HALF_OPEN)])
        clients.append(client)
    # a keep-alive client that asked once and then sends half of its next head
    keep_alive = socket.create_connection(("127.0.0.1", service.port))
    keep_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert keep_alive.recv(4096).startswith(b"HTTP/1.1 200")
    keep_alive.sendall(b"GET /healthz HTTP/1.1\r\n")
    clients.append(keep_alive)
    try:
        wait_until(
            lambda: all(closed_by_server(client) for client in clients),
            what="the server to close every connection without a complete head",
        )
        wait_until(lambda: service.descriptors() <= baseline, what="descriptors to be released")
        assert answers(service.base_url + "/healthz")
    finally:
        for client in clients:
            client.close()


def test_a_flood_of_idle_connections_leaves_descriptors_bounded_and_healthz_answering(
    start: Callable[[str], Service],
) -> None:
    limit = 20
    # a header timeout far longer than the test: only the limit closes connections here
    service = start(f'max_connections = {limit}\nheader_timeout = "10m"')
    baseline = service.descriptors()
    clients = []
    try:
        for index in range(5 * limit):
            client = socket.create_connection(("127.0.0.1", service.port))
            client.sendall(HALF_OPEN[index % len(HALF_OPEN)])
            clients.append(client)
        assert answers(service.base_url + "/healthz")
        assert answers(service.base_url + "/metrics")
        # every connection is accepted, and the oldest idle ones are closed to make room
        wait_until(
            lambda: sum(closed_by_server(client) for client in clients) >= 4 * limit,
            what="the oldest idle connections to be closed",
        )
        held = service.descriptors()
        assert held <= baseline + limit, (held, baseline)
        assert sum(not closed_by_server(client) for client in clients) <= limit
    finally:
        for client in clients:
            client.close()


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_guard_makes_room_from_the_longest_waiting_and_refuses_when_all_are_busy() -> None:
    guard = ConnectionGuard(max_connections=3, header_timeout=10.0)
    first, second, third = FakeConnection(), FakeConnection(), FakeConnection()
    for connection in (first, second, third):
        assert guard.admit(connection)
        guard.waiting(connection)
    guard.busy(first)  # first has a request in hand: not closable
    guard.busy(second)
    guard.waiting(second)  # second waits again, newer than third now
    fourth = FakeConnection()
    assert guard.admit(fourth)
    assert (first.closed, second.closed, third.closed) == (False, False, True)
    guard.busy(second)
    guard.busy(fourth)
    assert not guard.admit(FakeConnection())  # three busy: no room
    assert guard.open_connections == 3
