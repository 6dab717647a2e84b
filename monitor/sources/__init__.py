"""Source adapters, one module per kind, registered explicitly in ``SOURCES``."""

from __future__ import annotations

from monitor.sources.base import Source
from monitor.sources.discourse import Discourse
from monitor.sources.feed import Feed
from monitor.sources.github import GitHub
from monitor.sources.hackernews import HackerNews
from monitor.sources.lemmy import Lemmy
from monitor.sources.mastodon import Mastodon
from monitor.sources.reddit import Reddit
from monitor.sources.stackexchange import StackExchange

SOURCES: dict[str, type[Source]] = {
    "reddit": Reddit,
    "discourse": Discourse,
    "hackernews": HackerNews,
    "rss": Feed,
    "mastodon": Mastodon,
    "github": GitHub,
    "stackexchange": StackExchange,
    "lemmy": Lemmy,
}
"""Adapter kind (the config's ``source`` key) -> adapter class."""
