"""Keyed pseudonyms for authors, and the key they are made with.

A pseudonym is HMAC-SHA256(key, source + community + name): stable for one
community, unlinkable across communities, and not reversible by hashing a list
of known user names unless the key leaks (a plain hash would be).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

KEY_FILE_NAME = "pseudonym.key"


def pseudonym(key: bytes, *, source: str, community: str, name: str) -> str:
    message = "\x1f".join((source, community, name)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def load_or_create_key(*, configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else the one in ``data_dir``, else a new one written there (0600)."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_text(encoding="ascii").strip().encode("ascii")
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    log.warning(
        "no pseudonym_key configured: generated one at %s (mode 0600); keep it, "
        "or author pseudonyms change and participants are counted anew",
        path,
    )
    return key.encode("ascii")
