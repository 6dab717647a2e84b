"""HTTP basic authentication against bcrypt hashes (the web config's ``basic_auth_users``).

Every path needs a user and password except the probes, ``/healthz`` and
``/readyz``, which tell only whether the process is alive and ready. A missing
or wrong credential is 401 with ``WWW-Authenticate: Basic``. The check costs the
same bcrypt work whether the user exists or not (an unknown user is checked
against a hash of the same cost), and runs in a worker thread, so the event loop
keeps serving meanwhile. As in the exporter-toolkit, a credential that passed
once is remembered (by its SHA-256, never in clear) and not hashed again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
REMEMBERED = 64
"""Credentials remembered after a successful check (a few scrapers, a few people)."""


class BasicAuthUsers:
    """Users and their bcrypt hashes; ``verify`` in constant time as far as bcrypt allows."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        if not users:
            raise ValueError("basic authentication needs at least one user")
        self._users = dict(users)
        cost = max(int(hashed.split(b"$")[2]) for hashed in self._users.values())
        self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        self._passed: OrderedDict[bytes, None] = OrderedDict()

    async def verify(self, user: str, password: str) -> bool:
        fingerprint = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if fingerprint in self._passed:
            self._passed.move_to_end(fingerprint)
            return True
        known = self._users.get(user)
        hashed = known if known is not None else self._decoy
        secret = password.encode("utf-8")
        if len(secret) > 72:  # bcrypt reads no further; a longer password cannot match
            return False
        matches = await asyncio.to_thread(bcrypt.checkpw, secret, hashed)
        if not (matches and known is not None):
            return False
        self._passed[fingerprint] = None
        if len(self._passed) > REMEMBERED:
            self._passed.popitem(last=False)
        return True


def credentials(header: bytes | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` header, None if there is none."""
    if header is None:
        return None
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


UNAUTHORIZED = json.dumps({"detail": "authentication required (HTTP basic)"}).encode()


class RequireBasicAuth:
    """Every path of ``app`` but the probes needs a known user with the right password."""

    def __init__(self, app: ASGIApp, *, users: BasicAuthUsers) -> None:
        self.app = app
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        given = credentials(header)
        if given is not None and await self.users.verify(*given):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNAUTHORIZED)).encode()),
                    (b"www-authenticate", b'Basic realm="forum-monitor", charset="UTF-8"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
