"""Polling an adapter the way the scheduler does, for the fake-forum tests."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from monitor.config import Settings, settings_from_mapping
from monitor.http import HttpPolicy, PoliteClient
from monitor.sources.base import Batch, Source
from monitor.telemetry import Telemetry


def fake_settings(
    community: dict[str, Any], *, http: dict[str, Any] | None = None, **top: Any
) -> Settings:
    """Settings to poll ``community`` (30 days back unless it says otherwise) on a fake on
    127.0.0.1, without the polite rate limit; ``http`` adds HTTP settings, ``top`` others."""
    return settings_from_mapping(
        {
            **top,
            "http": {"rate_per_minute": {"127.0.0.1": 100000}, **(http or {})},
            "communities": [{"history_days": 30, **community}],
        }
    )


class SourcePoller:
    """Polls one community like the scheduler would: a fresh source per poll, cursor kept.
    ``async with`` closes its client at the end."""

    def __init__(
        self, adapter: type[Source], telemetry: Telemetry, settings: Settings, *, now: int
    ) -> None:
        policy = HttpPolicy(
            connect_timeout=2, read_timeout=2, total_timeout=5, backoff_base=0.01, max_retries=0
        )
        self.client = PoliteClient(policy=policy, telemetry=telemetry)
        self.adapter = adapter
        self.settings = settings
        self.now = now
        self.cursor: dict[str, Any] = {}

    async def poll(self, *, commit: bool = True) -> Batch:
        """One poll from the kept cursor; ``commit=False`` polls as if the poll then failed."""
        source = self.adapter(
            self.settings.communities[0], settings=self.settings, client=self.client
        )
        batch = await source.poll(cursor=self.cursor, validators={}, now=self.now)
        if commit:
            self.cursor = batch.cursor
        return batch

    async def __aenter__(self) -> SourcePoller:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.client.aclose()
