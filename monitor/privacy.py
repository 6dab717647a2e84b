"""Keyed pseudonyms for authors, and the key they are made with.

A pseudonym is HMAC-SHA256(key, source + community + name): stable for one
community, unlinkable across communities, and not reversible by hashing a list
of known user names unless the key leaks (a plain hash would be).

A namespace pseudonym is HMAC-SHA256(key, "namespace" + namespace + name): the same for
one account in every community of one platform namespace (all of Reddit, one Discourse
host, Mastodon accounts by ``acct@instance``; see ``Source.author_namespace``), so
participant flows between those communities can be counted, and never equal across
namespaces, where equal names are not the same person. Its message starts with the word
``namespace``, which no source kind is, so it never equals a per-community pseudonym.

The key is the configured ``pseudonym_key``, else the file ``data_dir/pseudonym.key``,
else a new random key written there. A key file is refused, never silently used,
when it is empty, shorter than ``MIN_PSEUDONYM_KEY_BYTES`` or open to group or
others; a new one is written atomically (a temporary file, fsync, then a link that
never replaces an existing key), so a failed write leaves no file behind. The store
remembers a fingerprint of the key (``key_fingerprint``, see ``monitor.store.keys``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from monitor.config import MIN_PSEUDONYM_KEY_BYTES
from monitor.errors import PseudonymKeyError
from monitor.filemodes import fsync_dir, make_private_dir

log = logging.getLogger(__name__)

KEY_FILE_NAME = "pseudonym.key"
FINGERPRINT_LABEL = b"forum-monitor pseudonym key fingerprint v1"
"""Contains no \\x1f, so no pseudonym's message can equal it: a fingerprint is never a
pseudonym, and without the key it says nothing about the key."""


_BLOCK = 64
"""SHA-256's block size: HMAC pads (or first hashes) the key to it."""
_INNER = bytes(byte ^ 0x36 for byte in range(256))
_OUTER = bytes(byte ^ 0x5C for byte in range(256))


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states having taken in the key's inner and outer pads (RFC 2104)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(padded.translate(_INNER)), hashlib.sha256(padded.translate(_OUTER))


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """``hmac.new(key, message, hashlib.sha256).hexdigest()``, at half its cost on the short
    messages of pseudonyms: the key's padded states are computed once per key and copied,
    not set up again for every name of every poll."""
    inner_state, outer_state = _keyed(key)
    inner = inner_state.copy()
    inner.update(message)
    outer = outer_state.copy()
    outer.update(inner.digest())
    return str(outer.hexdigest())


def pseudonym(key: bytes, *, source: str, community: str, name: str) -> str:
    message = "\x1f".join((source, community, name)).encode("utf-8")
    return hmac_sha256_hex(key, message)


NAMESPACE_TAG = "namespace"


def namespace_pseudonym(key: bytes, *, namespace: str, name: str) -> str:
    """One account's pseudonym across every community of ``namespace`` (flows only)."""
    message = "\x1f".join((NAMESPACE_TAG, namespace, name)).encode("utf-8")
    return hmac_sha256_hex(key, message)


def key_fingerprint(key: bytes) -> str:
    """HMAC(key, a fixed label): tells two keys apart without revealing either."""
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE_NAME


def load_or_create_key(*, configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else the one in ``data_dir``, else a new one written there (0600)."""
    if configured:
        key = configured.encode("utf-8")
        if len(key.strip()) < MIN_PSEUDONYM_KEY_BYTES:  # config validation says so first
            raise PseudonymKeyError(
                f"pseudonym_key: must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes"
            )
        return key
    path = key_file(data_dir)
    existing = read_key_file(path)
    return existing if existing is not None else create_key_file(path)


def read_key_file(path: Path) -> bytes | None:
    """The key in ``path``, or None if there is no such file; refuses a file that is
    open to group or others, empty or too short."""
    try:
        with path.open("rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            content = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PseudonymKeyError(
            f"cannot read the pseudonym key file {path}: {exc.strerror or exc} (make data_dir "
            f"({path.parent}) a directory the service can read, or set pseudonym_key)",
            path=str(path),
        ) from None
    if mode & 0o077:
        raise PseudonymKeyError(
            f"the pseudonym key file {path} is open to group or others (mode {mode:04o}); "
            f"run chmod 600 {path}, and consider the key leaked if others could read it",
            path=str(path),
        )
    key = content.strip()
    if not key:
        raise PseudonymKeyError(
            f"the pseudonym key file {path} is empty (a failed first start?); restore it from "
            "a backup, or delete it and start once with --accept-new-key to count authors anew",
            path=str(path),
        )
    if len(key) < MIN_PSEUDONYM_KEY_BYTES:
        raise PseudonymKeyError(
            f"the pseudonym key file {path} holds {len(key)} bytes, fewer than "
            f"{MIN_PSEUDONYM_KEY_BYTES}; restore the right file, or delete it and start once "
            "with --accept-new-key to count authors anew",
            path=str(path),
        )
    return key


def create_key_file(path: Path) -> bytes:
    """A new random key in ``path`` (0600), written whole or not at all; if another process
    wrote one first, that one."""
    key = secrets.token_hex(32).encode("ascii")
    directory = path.parent
    try:
        make_private_dir(directory)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp made it 0600
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # unlike rename, never replaces a key that appeared
        fsync_dir(directory)
    except FileExistsError:
        log.info("another process wrote %s first; using its key", path)
        existing = read_key_file(path)
        if existing is None:
            raise PseudonymKeyError(
                f"the pseudonym key file {path} vanished while it was being written",
                path=str(path),
            ) from None
        return existing
    except OSError as exc:
        raise _unwritable(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    log.warning(
        "no pseudonym_key configured: generated one at %s (mode 0600); keep it, and back it "
        "up with the store: without it this store refuses to start",
        path,
    )
    return key


def _unwritable(path: Path, exc: OSError) -> PseudonymKeyError:
    reason = exc.strerror or str(exc)
    return PseudonymKeyError(
        f"cannot write a new pseudonym key to {path}: {reason}; nothing was written "
        f"(make data_dir ({path.parent}) a writable directory with free space, "
        "or set pseudonym_key)",
        path=str(path),
    )
