"""Helpers shared by the HTTP policy tests (this module holds no tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from monitor.config import settings_from_mapping
from monitor.http import HttpPolicy, PoliteClient
from monitor.telemetry import Telemetry

HOST = "127.0.0.1"
CONTACT = "ops@example.org"
SETTINGS = settings_from_mapping({"http": {"rate_per_minute": {HOST: 100000}}, "contact": CONTACT})
"""So the per-host bucket (one request per 0.6 ms) never slows a test that is not about it."""

MIB = 1024 * 1024


def tight_policy(**overrides: Any) -> HttpPolicy:
    """Small timeouts and waits so failure paths finish in milliseconds."""
    knobs: dict[str, Any] = {
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "total_timeout": 5.0,
        "max_body_bytes": MIB,
        "max_retries": 3,
        "backoff_base": 0.01,
        "backoff_cap": 1.0,
        "max_retry_wait": 5.0,
        "contact": SETTINGS.contact,
    }
    return HttpPolicy(**(knobs | overrides))


@dataclass
class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records each wait and returns at once."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


ClientFactory = Callable[..., PoliteClient]


def client_factory(telemetry: Telemetry) -> tuple[ClientFactory, Callable[[], Awaitable[None]]]:
    """A factory for clients rated like the settings say, and a closer for all it made."""
    made: list[PoliteClient] = []

    def make(
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rate: float | None = None,
        **overrides: Any,
    ) -> PoliteClient:
        extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        client = PoliteClient(
            policy=tight_policy(**overrides), telemetry=telemetry, transport=transport, **extra
        )
        client.set_rate(HOST, SETTINGS.http.rate_per_minute[HOST] if rate is None else rate)
        made.append(client)
        return client

    async def close_all() -> None:
        for client in made:
            await client.aclose()

    return make, close_all


def requests_total(registry: CollectorRegistry, code: str, host: str = HOST) -> float:
    """``forum_monitor_http_requests_total{host,code}``, 0 when the series does not exist."""
    value = registry.get_sample_value(
        "forum_monitor_http_requests_total", {"host": host, "code": code}
    )
    return 0.0 if value is None else value


class CountingStream(httpx.AsyncByteStream):
    """Wraps a response stream and counts the bytes the client actually pulled."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.pulled += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingTransport(httpx.AsyncBaseTransport):
    """A real socket transport whose response bodies are counted as they are read."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.streams: list[CountingStream] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        counted = CountingStream(response.stream)
        self.streams.append(counted)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=counted,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
