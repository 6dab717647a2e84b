"""One polling process per SQLite store.

SQLite serves one writer at a time and knows nothing of the work a process does:
two ``serve`` (or ``serve`` and ``poll-once``) processes on one file would both poll
every community, double the requests and fight over the cursor. So a process that
polls a SQLite store holds an exclusive ``flock`` on ``<store>.poller.lock`` while
it runs, and a second one refuses to start in one line naming the holder. The lock
goes with the process (a SIGKILL frees it). ``backfill`` keeps a cursor of its own
and may run beside the poller, so it takes no lock. Several replicas need
PostgreSQL, where leases divide the communities.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from monitor.errors import StartupError


class AnotherPoller(StartupError):
    """Another process polls the same SQLite store."""


class PollerLock:
    """The exclusive lock of the process that polls a SQLite store (nothing otherwise)."""

    def __init__(self, database_url: str) -> None:
        self.path = lock_path(database_url)
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``AnotherPoller`` naming the process that has it."""
        if self.path is None or self._handle is not None:
            return
        try:
            handle = self.path.open("a+", encoding="ascii")
        except OSError:
            return  # the store's own checks report an unusable data_dir, in one line
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            store = self.path.name.removesuffix(".poller.lock")
            raise AnotherPoller(
                f"process {holder} already polls the SQLite store {store} "
                f"({self.path.parent}); SQLite serves one polling process: stop the other "
                "one, or put several replicas on PostgreSQL"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def lock_path(database_url: str) -> Path | None:
    """``<store>.poller.lock`` beside a SQLite file; None for other databases."""
    try:
        parsed = make_url(database_url)
    except Exception:  # an unparseable URL is reported where the store is opened
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.poller.lock")
