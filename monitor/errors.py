"""The typed errors of forum-monitor.

Expected failures are translated into these at the edge where they happen
(HTTP, database, config) with ``raise ... from exc``; anything else is a bug and
is logged with its traceback.

    ForumMonitorError
    ├── ConfigError              invalid settings; ``problems`` holds one line each
    ├── StartupError             the service cannot start; the message says how to fix it
    │   ├── ListenError          cannot listen on ``address`` (in use, not of this host, ...)
    │   └── DataDirError         ``path`` under ``data_dir`` cannot be created or written
    ├── StoreError               the database cannot be used
    │   ├── DatabaseUnreachable  cannot connect; ``host`` names it (never the password)
    │   └── StoreCorrupt         the SQLite file is damaged or empty; ``path``, ``detail``
    ├── PseudonymKeyError        the pseudonym key cannot be used (missing, empty, short,
    │   │                        readable by others, unwritable); ``path`` of its file
    │   └── KeyMismatch          the store was written with another key; ``stored`` and
    │                            ``presented`` fingerprints (never the keys)
    └── SourceError              a poll of one community failed; ``community``, ``reason``
        ├── UnknownSource        no adapter is registered for the configured kind
        ├── PollCancelled        the service is stopping; the poll rolls back
        └── FetchError           one HTTP exchange failed; ``host``, ``url``
            ├── TransportError   connect error, reset, timeout (``reason`` timeout/connect)
            ├── HTTPStatusError  a non-success status; ``status`` (``body`` when asked for)
            │   └── RateLimited  429 or 503 with Retry-After; ``retry_after`` seconds
            ├── ResponseTooLarge the body passed the size cap
            ├── MalformedResponse the body is not what the API documents
            └── RedirectRefused  a redirect the policy does not follow; ``target``

Every ``SourceError`` has a short ``reason`` (a Prometheus label value from a
small fixed set) and never carries a user name, a post body or a secret.
"""

from __future__ import annotations


class ForumMonitorError(Exception):
    """Base of every error forum-monitor raises on purpose."""


class ConfigError(ForumMonitorError):
    """The configuration is invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StartupError(ForumMonitorError):
    """The service cannot start; the message names what failed and how to fix it."""


class ListenError(StartupError):
    """No listening socket could be made on ``address`` (HOST:PORT); ``fix`` says what to do."""

    def __init__(self, address: str, detail: str, *, fix: str) -> None:
        self.address = address
        self.detail = detail
        self.fix = fix
        super().__init__(f"cannot listen on {address}: {detail}; {fix}")


class DataDirError(StartupError):
    """``path`` (in or below ``data_dir``) cannot be created, read or written."""

    def __init__(self, path: str, *, action: str, reason: str, fix: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot {action} {path}: {reason}; {fix}")


class StoreError(ForumMonitorError):
    """The database cannot be used."""


class DatabaseUnreachable(StoreError):
    """No connection could be made to the database server at ``host``."""

    def __init__(self, host: str, detail: str) -> None:
        self.host = host
        self.detail = detail
        super().__init__(f"cannot connect to the database at {host}: {detail}")


class StoreCorrupt(StoreError):
    """The SQLite file at ``path`` is not a sound database (``detail`` says what was found)."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"the store {path} is corrupt ({detail}): restore it from a backup or move it away"
        )


class PseudonymKeyError(ForumMonitorError):
    """The pseudonym key cannot be used; ``path`` is its file when it has one."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class KeyMismatch(PseudonymKeyError):
    """The key is not the one the store was written with (``stored``/``presented``
    are fingerprints, never keys)."""

    def __init__(
        self, message: str, *, stored: str, presented: str, path: str | None = None
    ) -> None:
        self.stored = stored
        self.presented = presented
        super().__init__(message, path=path)


class SourceError(ForumMonitorError):
    """A poll of one community failed."""

    reason = "error"

    def __init__(self, message: str, *, community: str | None = None) -> None:
        self.community = community
        super().__init__(message)


class UnknownSource(SourceError):
    reason = "unknown_source"


class PollCancelled(SourceError):
    reason = "cancelled"


class FetchError(SourceError):
    """One HTTP exchange failed."""

    reason = "fetch_error"

    def __init__(
        self, message: str, *, host: str, url: str = "", community: str | None = None
    ) -> None:
        self.host = host
        self.url = url
        super().__init__(message, community=community)


class TransportError(FetchError):
    """The connection failed, was reset or timed out."""

    reason = "connect"

    def __init__(self, message: str, *, host: str, url: str = "", timeout: bool = False) -> None:
        super().__init__(message, host=host, url=url)
        if timeout:
            self.reason = "timeout"


class HTTPStatusError(FetchError):
    """The server answered with a status that is not a success; ``body`` holds the start of
    its body when the request asked for it (else it is empty)."""

    def __init__(
        self, message: str, *, host: str, url: str = "", status: int, body: bytes = b""
    ) -> None:
        self.status = status
        self.body = body
        super().__init__(message, host=host, url=url)
        self.reason = "http_5xx" if status >= 500 else "http_4xx"


class RateLimited(HTTPStatusError):
    """The server asked us to wait ``retry_after`` seconds before asking again."""

    def __init__(
        self,
        message: str,
        *,
        host: str,
        url: str = "",
        status: int,
        retry_after: float,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, host=host, url=url, status=status, body=body)
        self.retry_after = retry_after
        self.reason = "rate_limited"


class ResponseTooLarge(FetchError):
    reason = "too_large"


class MalformedResponse(FetchError):
    reason = "malformed"


class RedirectRefused(FetchError):
    """A redirect not followed: to another origin, to plain HTTP, of a POST, or one too many.

    ``host`` is the host that sent it, ``target`` where it pointed (as sent, unescaped: the
    message quotes it escaped).
    """

    reason = "redirect"

    def __init__(self, message: str, *, host: str, url: str = "", target: str = "") -> None:
        super().__init__(message, host=host, url=url)
        self.target = target


FAILURE_REASONS = (
    "unknown_source",
    "cancelled",
    "connect",
    "timeout",
    "http_4xx",
    "http_5xx",
    "rate_limited",
    "too_large",
    "malformed",
    "redirect",
    "store",
    "internal",
)
"""Every value the ``reason`` label of ``forum_monitor_poll_failures_total`` takes."""

REJECTION_REASONS = ("missing_field", "bad_time", "bad_id")
"""Every value the ``reason`` label of ``forum_monitor_items_rejected_total`` takes: an
item without an id, time or thread; with a time before its source existed or in the
future; with an id its source cannot have handed out. A rejected item is not an error
of the poll: the rest of its page is stored."""
