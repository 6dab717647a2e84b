"""A fake Mastodon instance: hashtag timelines, for tests and benchmarks on 127.0.0.1.

``/api/v1/timelines/tag/{tag}`` as Mastodon serves it (see the recorded
responses in ``shared/real-samples/mastodon``): a bare JSON array of statuses,
newest first, ``limit`` (default 20, at most 40), ``max_id`` (older than),
``since_id`` (newer than, the newest ones) and ``min_id`` (the ones immediately
newer), ``local=true``; paging links in the ``Link`` header. Ids are
Mastodon-style: milliseconds of the creation time shifted left 16 bits, plus a
sequence number, as numeric strings.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode

from monitor.fakeforum.server import FakeResponse, Request, Router, query_value

MAX_LIMIT = 40
DEFAULT_LIMIT = 20
TIMELINE = "/api/v1/timelines/tag/"


@dataclass
class FakeStatus:
    id: int
    tag: str
    created: float
    acct: str
    content: str
    reply_to: int | None = None
    local: bool = True
    boost_of: int | None = None
    spoiler: str = ""
    edited: float | None = None
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    """Raw fields that replace the rendered ones (for hostile-data tests)."""


def _account_id(acct: str) -> str:
    return str(zlib.crc32(acct.encode()))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(epoch * 1000) % 1000:03d}Z"
    )


class FakeMastodon:
    def __init__(self, *, prefix: str = "", domain: str = "fake.social") -> None:
        self.prefix = prefix
        self.domain = domain
        self.statuses: dict[int, FakeStatus] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def add_status(
        self,
        tag: str,
        *,
        created: float,
        author: str = "member",
        content: str = "<p>Hello</p>",
        reply_to: str | None = None,
        local: bool = True,
        boost_of: str | None = None,
        spoiler: str = "",
        arrived: float | None = None,
    ) -> str:
        """Add a status to ``tag``'s timeline; returns its id. Remote authors look like
        ``user@other.example`` (``local`` False). The id encodes ``created``, or
        ``arrived`` when given, as Mastodon does for some remote statuses it receives late."""
        with self._lock:
            self._seq += 1
            moment = created if arrived is None else arrived
            number = (int(moment * 1000) << 16) | (self._seq & 0xFFFF)
            self.statuses[number] = FakeStatus(
                number,
                tag.lower(),
                created,
                author if local else f"{author}@other.example",
                content,
                reply_to=int(reply_to) if reply_to else None,
                local=local,
                boost_of=int(boost_of) if boost_of else None,
                spoiler=spoiler,
            )
            return str(number)

    def edit(self, status_id: str, *, content: str, at: float) -> None:
        with self._lock:
            status = self.statuses[int(status_id)]
            status.content, status.edited = content, at

    def delete(self, status_id: str) -> None:
        with self._lock:
            self.statuses[int(status_id)].deleted = True

    def register(self, router: Router) -> None:
        router.add(lambda path: path.startswith(self.prefix + TIMELINE), self._timeline)

    def _timeline(self, request: Request) -> FakeResponse:
        tag = unquote(request.path[len(self.prefix + TIMELINE) :]).lower()
        try:
            limit = int(query_value(request.query, "limit", str(DEFAULT_LIMIT)) or DEFAULT_LIMIT)
            bounds = {
                name: int(value)
                for name in ("max_id", "since_id", "min_id")
                if (value := query_value(request.query, name))
            }
        except ValueError:
            return FakeResponse.json({"error": "Invalid parameter"}, status=422)
        limit = max(1, min(limit, MAX_LIMIT))
        local_only = query_value(request.query, "local") == "true"
        with self._lock:
            listed = sorted(
                (
                    s
                    for s in self.statuses.values()
                    if s.tag == tag
                    and not s.deleted
                    and (s.local or not local_only)
                    and s.id < bounds.get("max_id", 1 << 80)
                    and s.id > bounds.get("since_id", bounds.get("min_id", -1))
                ),
                key=lambda s: s.id,
            )
            # min_id: the statuses immediately newer; otherwise the newest ones
            page = listed[:limit] if "min_id" in bounds else listed[-limit:]
            page.reverse()
            body = [self.render(s) for s in page]
        response = FakeResponse.json(body)
        if page:
            response.headers["Link"] = self._links(tag, request, page)
        return response

    def _links(self, tag: str, request: Request, page: list[FakeStatus]) -> str:
        base = f"http://127.0.0.1{self.prefix}{TIMELINE}{tag}"
        kept = {k: v[0] for k, v in request.query.items() if k not in ("max_id", "min_id")}
        older = urlencode({**kept, "max_id": page[-1].id})
        newer = urlencode({**kept, "min_id": page[0].id})
        return f'<{base}?{older}>; rel="next", <{base}?{newer}>; rel="prev"'

    def render(self, status: FakeStatus) -> dict[str, Any]:
        """A status in the shape of the recorded responses."""
        username = status.acct.split("@", 1)[0]
        boosted = self.statuses.get(status.boost_of) if status.boost_of else None
        parent = self.statuses.get(status.reply_to) if status.reply_to else None
        url = f"https://{self.domain}/@{status.acct}/{status.id}"
        return {
            "id": str(status.id),
            "created_at": iso(status.created),
            "in_reply_to_id": str(status.reply_to) if status.reply_to else None,
            "in_reply_to_account_id": _account_id(parent.acct) if parent else None,
            "sensitive": bool(status.spoiler),
            "spoiler_text": status.spoiler,
            "visibility": "public",
            "language": "en",
            "uri": url,
            "url": None if boosted else url,
            "replies_count": sum(1 for s in self.statuses.values() if s.reply_to == status.id),
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": iso(status.edited) if status.edited is not None else None,
            "content": "" if boosted else status.content,
            "reblog": self.render(boosted) if boosted else None,
            "account": {
                "id": _account_id(status.acct),
                "username": username,
                "acct": status.acct,
                "display_name": username.title(),
                "url": f"https://{self.domain}/@{status.acct}",
            },
            "media_attachments": [],
            "mentions": [],
            "tags": [{"name": status.tag, "url": f"https://{self.domain}/tags/{status.tag}"}],
            "emojis": [],
            "card": None,
            "poll": None,
            **status.extra,
        }
