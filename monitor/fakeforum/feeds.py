"""Fake RSS 2.0 and Atom feeds, with ETag/Last-Modified and 304 answers.

One ``FakeFeeds`` serves any number of feeds, each at its own path. Entries are
held in memory and rendered newest first, at most ``limit`` per feed (Discourse
shows 50 in ``/posts.rss`` and 25 in a topic's feed). RSS is rendered in the
shape Discourse writes (see ../shared/real-samples/rss): ``dc:creator`` and
``description`` in CDATA, RFC 2822 ``pubDate``, ``guid isPermaLink="false"``.

``add_entry`` adds a generic entry with any fields missing on purpose;
``add_thread``/``add_reply`` add Discourse-style posts (guid
``<site>-post-<n>``, link ``/t/<slug>/<topic>[?page=p]#post_<number>``).

Every change bumps the feed's Last-Modified by at least one second and changes
its ETag (a hash of the body), so a conditional request gets a 304 exactly when
nothing changed. If-None-Match wins over If-Modified-Since (RFC 9110).
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from monitor.fakeforum.server import FakeResponse, Request, Router

FeedFormat = Literal["rss", "atom"]

_CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
}


@dataclass
class FeedEntry:
    """One entry; ``None`` fields are left out of the rendered feed."""

    guid: str | None
    title: str
    published: int | None
    link: str | None = None
    author: str | None = None
    summary: str = ""
    updated: int | None = None


@dataclass
class _Topic:
    topic_id: int
    slug: str
    title: str
    posts: int = 0


@dataclass
class _Feed:
    path: str
    title: str
    format: FeedFormat
    limit: int
    entries: list[FeedEntry] = field(default_factory=list)
    modified_at: int = 0


def _rfc2822(moment: int) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(moment, UTC))


def _rfc3339(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "topic"


class FakeFeeds:
    """Several feeds of one site, served on a ``Router``."""

    def __init__(
        self, *, site_url: str = "https://forum.example", clock: Callable[[], float] = time.time
    ) -> None:
        self.site_url = site_url.rstrip("/")
        self.site = urlsplit(self.site_url).netloc
        self._clock = clock
        self._feeds: dict[str, _Feed] = {}
        self._topics: dict[int, _Topic] = {}
        self._next_post_id = 1000
        self._next_topic_id = 100
        self._lock = threading.Lock()  # the server answers from its own threads

    def add_feed(
        self, path: str, *, title: str = "Latest posts", format: FeedFormat = "rss", limit: int = 50
    ) -> None:
        with self._lock:
            self._feeds[path] = _Feed(path, title, format, limit)
            self._touch(self._feeds[path])

    def register(self, router: Router) -> None:
        """Serve every feed, present and future, under its path."""
        router.add(lambda path: path in self._feeds, self.handle)

    def add_entry(
        self,
        path: str,
        *,
        guid: str | None,
        title: str,
        published: int | None,
        link: str | None = None,
        author: str | None = None,
        summary: str = "",
        updated: int | None = None,
    ) -> FeedEntry:
        entry = FeedEntry(guid, title, published, link, author, summary, updated)
        with self._lock:
            feed = self._feeds[path]
            feed.entries.append(entry)
            self._touch(feed)
        return entry

    def add_thread(self, path: str, *, title: str, author: str, at: int, body: str = "") -> int:
        """A Discourse-style topic with its first post; returns the topic id."""
        with self._lock:
            topic = _Topic(self._next_topic_id, _slug(title), title)
            self._next_topic_id += 1
            self._topics[topic.topic_id] = topic
        self._add_post(path, topic, author=author, at=at, body=body)
        return topic.topic_id

    def add_reply(self, path: str, *, topic_id: int, author: str, at: int, body: str = "") -> int:
        """A Discourse-style reply in ``topic_id``; returns its post number."""
        return self._add_post(path, self._topics[topic_id], author=author, at=at, body=body)

    def _add_post(self, path: str, topic: _Topic, *, author: str, at: int, body: str) -> int:
        with self._lock:
            topic.posts += 1
            number, post_id = topic.posts, self._next_post_id
            self._next_post_id += 1
        page = (number - 2) // 20 + 1  # fits the recorded links: post 22 -> page 2, 44 -> 3
        query = f"?page={page}" if page > 1 else ""
        self.add_entry(
            path,
            guid=f"{self.site}-post-{post_id}",
            title=topic.title,
            published=at,
            link=f"{self.site_url}/t/{topic.slug}/{topic.topic_id}{query}#post_{number}",
            author=f"@{author}",
            summary=body or f"<p>post {number}</p>",
        )
        return number

    def _touch(self, feed: _Feed) -> None:
        feed.modified_at = max(int(self._clock()), feed.modified_at + 1)

    def render(self, path: str) -> bytes:
        return self._snapshot(path)[0]

    def _snapshot(self, path: str) -> tuple[bytes, int, FeedFormat]:
        with self._lock:
            feed = self._feeds[path]
            shown = sorted(feed.entries, key=lambda e: e.published or 0, reverse=True)
            render = _render_rss if feed.format == "rss" else _render_atom
            body = render(feed, shown[: feed.limit], feed.modified_at, self.site_url)
            return body.encode(), feed.modified_at, feed.format

    def handle(self, request: Request) -> FakeResponse:
        body, modified_at, feed_format = self._snapshot(request.path)
        headers = {
            "ETag": '"' + hashlib.sha256(body).hexdigest()[:20] + '"',
            "Last-Modified": email.utils.formatdate(modified_at, usegmt=True),
            "Content-Type": _CONTENT_TYPES[feed_format],
        }
        if _not_modified(request, etag=headers["ETag"], modified_at=modified_at):
            return FakeResponse(304, b"", headers)
        return FakeResponse(200, body, headers)


def _not_modified(request: Request, *, etag: str, modified_at: int) -> bool:
    if (tags := request.headers.get("if-none-match")) is not None:
        return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in tags.split(","))
    if (since := request.headers.get("if-modified-since")) is not None:
        try:
            moment = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return moment is not None and moment.timestamp() >= modified_at
    return False


def _rss_item(entry: FeedEntry) -> str:
    lines = [f"        <title>{escape(entry.title)}</title>"]
    if entry.author is not None:
        lines.append(f"        <dc:creator>{_cdata(entry.author)}</dc:creator>")
    lines.append(f"        <description>{_cdata(' ' + entry.summary + ' ')}</description>")
    if entry.link is not None:
        lines.append(f"        <link>{escape(entry.link)}</link>")
    if entry.published is not None:
        lines.append(f"        <pubDate>{_rfc2822(entry.published)}</pubDate>")
    if entry.guid is not None:
        lines.append(f'        <guid isPermaLink="false">{escape(entry.guid)}</guid>')
    return "      <item>\n" + "\n".join(lines) + "\n      </item>\n"


def _render_rss(feed: _Feed, entries: list[FeedEntry], modified: int, site_url: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<rss version="2.0" xmlns:discourse="http://www.discourse.org/" '
        'xmlns:atom="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        "  <channel>\n"
        f"    <title>{escape(feed.title)}</title>\n"
        f"    <link>{escape(site_url)}</link>\n"
        f"    <description>{escape(feed.title)}</description>\n"
        f"    <lastBuildDate>{_rfc2822(modified)}</lastBuildDate>\n"
        f'    <atom:link href={quoteattr(site_url + feed.path)} rel="self" '
        'type="application/rss+xml" />\n'
        + "".join(_rss_item(entry) for entry in entries)
        + "  </channel>\n</rss>\n"
    )


def _atom_entry(entry: FeedEntry) -> str:
    lines = [f"    <title>{escape(entry.title)}</title>"]
    if entry.guid is not None:
        lines.append(f"    <id>{escape(entry.guid)}</id>")
    if entry.link is not None:
        lines.append(f'    <link rel="alternate" href={quoteattr(entry.link)}/>')
    if entry.published is not None:
        lines.append(f"    <published>{_rfc3339(entry.published)}</published>")
    if entry.updated is not None:
        lines.append(f"    <updated>{_rfc3339(entry.updated)}</updated>")
    if entry.author is not None:
        lines.append(f"    <author><name>{escape(entry.author)}</name></author>")
    lines.append(f'    <content type="html">{escape(entry.summary)}</content>')
    return "  <entry>\n" + "\n".join(lines) + "\n  </entry>\n"


def _render_atom(feed: _Feed, entries: list[FeedEntry], modified: int, site_url: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f"  <title>{escape(feed.title)}</title>\n"
        f"  <id>{escape(site_url + feed.path)}</id>\n"
        f"  <updated>{_rfc3339(modified)}</updated>\n"
        f'  <link rel="self" href={quoteattr(site_url + feed.path)}/>\n'
        + "".join(_atom_entry(entry) for entry in entries)
        + "</feed>\n"
    )
