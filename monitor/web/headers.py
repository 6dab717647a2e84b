"""What every HTTP answer of the service carries, and HEAD wherever GET answers.

Two ASGI middlewares, outermost first:

- ``HeadAsGet``: a HEAD request runs as the GET it stands for; the client gets
  the same status and headers (``Content-Length`` included) and no body.
- ``SecurityHeaders``: ``X-Content-Type-Options: nosniff`` on every response,
  and a Content-Security-Policy that allows nothing but the pages' own
  stylesheet, by its hash: the status page and /docs have no script, no image,
  no frame and no form, and a response that is not HTML needs nothing at all.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.web.status import stylesheet


@cache
def content_security_policy() -> str:
    """The one policy of every response: only the pages' own ``<style>`` may apply."""
    digest = base64.b64encode(hashlib.sha256(stylesheet().encode("utf-8")).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """``nosniff`` and the Content-Security-Policy on every response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Content-Security-Policy"] = content_security_policy()
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """HEAD runs as GET; the body is dropped and the headers kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
