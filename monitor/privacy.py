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

from monitor.errors import DataDirError

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
    fix = f"make data_dir ({data_dir}) a writable directory, or set pseudonym_key"
    try:
        stored = path.read_text(encoding="ascii").strip() if path.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataDirError(
            str(path), action="read the pseudonym key", reason=_reason(exc), fix=fix
        ) from None
    if stored is not None:
        if not stored:
            raise DataDirError(
                str(path),
                action="use the pseudonym key in",
                reason="the file is empty",
                fix="restore it from a backup, or delete it to have a new one generated "
                "(every author then looks new), or set pseudonym_key",
            )
        return stored.encode("ascii")
    key = secrets.token_hex(32)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
    except OSError as exc:
        raise DataDirError(
            str(path), action="write a new pseudonym key to", reason=_reason(exc), fix=fix
        ) from None
    log.warning(
        "no pseudonym_key configured: generated one at %s (mode 0600); keep it, "
        "or author pseudonyms change and participants are counted anew",
        path,
    )
    return key.encode("ascii")


def _reason(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)
