"""Source adapters, one module per kind, registered explicitly in ``SOURCES``."""

from __future__ import annotations

from monitor.sources.base import Source

SOURCES: dict[str, type[Source]] = {}
"""Adapter kind (the config's ``source`` key) -> adapter class."""
