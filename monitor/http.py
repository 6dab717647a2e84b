"""The one HTTP policy every source goes through.

- timeouts on connect, read and the whole exchange;
- a cap on the body (``max_body_bytes``) that bounds both the bytes received and what
  they decode to, checked as they are produced: the raw bytes are inflated here (never
  by httpx, which would inflate a network chunk whole first), each ``decompress`` call
  allowed no more than what is left under the cap, so a bomb of a few KB costs a poll at
  most the cap in memory. We ask for ``gzip, deflate`` and read only those (deflate
  zlib-wrapped or raw): stacked codings (``gzip, gzip``) and any we did not ask for (br,
  zstd, ...) are a ``MalformedResponse`` naming the coding, a compressed stream cut short
  too. Only a success's body is read; an error's or a redirect's is left on the wire,
  unless the request asks for it (``error_body``: Stack Exchange puts its error in a 400's
  body), and then at most ``ERROR_BODY_BYTES`` of it, decoded, on the ``HTTPStatusError``;
- retries with exponential backoff and "equal" jitter on connection errors,
  timeouts and 5xx: retry ``n`` waits between half and all of
  ``backoff_base * 2**n`` (capped), so the wait always grows and a struggling
  server is never asked again at once, while the jitter spreads replicas apart;
  a 4xx, a too-large or malformed body or a refused redirect is not retried;
- ``Retry-After`` on 429/503, and on a 403 (GitHub's secondary rate limit), and a 403 or
  429 whose ``X-Ratelimit-Remaining`` is 0 (GitHub's primary limit, until
  ``X-Ratelimit-Reset``) are a ``RateLimited`` (seconds or an HTTP date): the host is not asked
  again before that moment, by this poll or any other; a server's wait
  (``Retry-After`` or ``X-Ratelimit-Reset``) counts up to ``MAX_SERVER_WAIT``
  (one hour) and no further, so a wait near 1e300 or dated year 9999 pauses a
  host for an hour, never for good;
- per-host rate limits: a leaky bucket per host (``aiolimiter``) that holds
  ``HttpPolicy.rate_burst`` requests (1 by default) and drains at the rate set
  by the source kind, so requests go out evenly spaced ``60 / per_minute``
  seconds apart and an idle host earns no volley; ``X-Ratelimit-Remaining``/
  ``-Reset`` headers (Reddit sends ``"598.0"`` and ``"304"``) pause a host
  until the reset when its budget is spent (a reset above 1e9 is read as the
  Unix time of the reset, as GitHub sends it);
- redirects (301/302/303/307/308) are followed here, never by httpx, at most
  ``MAX_REDIRECTS`` hops, each resolved against the URL that answered and sent as a
  request of its own (its host's turn, its count, its status): only within the
  request's origin (scheme, host, port), from http to https on the same host, or
  between the origins of one group in ``HttpPolicy.redirect_sites`` (Reddit's hosts);
  never from https to plain http, and never for a POST. Any other is a
  ``RedirectRefused`` (reason ``redirect``, not retried) whose message names, escaped,
  where it pointed: a redirect to 169.254.169.254 is refused unsent;
- credentials (the ``credentials`` a request names, ``auth``, and any of
  ``CREDENTIAL_HEADERS`` among its headers: Authorization, Cookie, Api-Key, ...) go to
  the request's own origin only: a hop to any other origin, even an allowed one, is
  sent without them; cookies a server sets are not kept at all;
- what a server sent (a coding, a content type, a redirect's target) is quoted in an
  error through ``for_log``, escaped and cut: errors become log lines and the status
  page's last error, and a server must not write either;
- a descriptive User-Agent carrying the operator's contact;
- conditional requests (``If-None-Match``/``If-Modified-Since``) where the
  server sent validators;
- ``forum_monitor_http_requests_total{host,code}`` (``code`` one of ``KNOWN_STATUSES``,
  ``other`` or ``error`` when no status came, so a server cannot mint label values)
  and ``forum_monitor_rate_limit_remaining{host}`` (from ``X-Ratelimit-Remaining``, or
  what a source reads in its bodies through ``note_remaining``).

httpx retries nothing by itself except connection setup, so this is ours.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from monitor import __version__
from monitor.errors import (
    FetchError,
    HTTPStatusError,
    MalformedResponse,
    RateLimited,
    RedirectRefused,
    ResponseTooLarge,
    TransportError,
)
from monitor.telemetry import Telemetry
from monitor.untrusted import for_log

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
"""Hops one request may take; one more is a ``RedirectRefused``."""
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "api-key", "api-username"}
)
"""Headers that authenticate us wherever a caller puts them: never sent to another origin
(the ``credentials`` a request names are kept back too)."""
REDIRECT_SITES: tuple[frozenset[str], ...] = (
    frozenset({"https://reddit.com", "https://www.reddit.com", "https://oauth.reddit.com"}),
)
"""Origins of one operator serving one API: a redirect between two of a group is
followed (credentials stay behind all the same). Reddit sends a bare reddit.com to
www, and the adapter reads listings from www or oauth, whose redirects (an unknown
subreddit's among them) may name the other; nothing else is listed."""
DEFAULT_PORTS = {"http": 80, "https": 443}
KNOWN_STATUSES = frozenset(
    {200, 201, 204, 301, 302, 303, 304, 307, 308}
    | {400, 401, 403, 404, 410, 422, 429}
    | {500, 502, 503, 504}
)
"""Statuses counted under their own ``code`` label: what the APIs we poll answer and
what the policy acts on. Any other is counted as ``other``, so a server answering a
sweep of odd codes adds one series, not one per code."""


def status_label(status: int) -> str:
    """The ``code`` label of ``forum_monitor_http_requests_total`` for ``status``."""
    return str(status) if status in KNOWN_STATUSES else "other"


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_retries: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    max_retry_wait: float = 60.0
    """A Retry-After longer than this ends the poll; the next poll waits for it instead."""
    contact: str = ""
    rate_burst: int = 1
    """Requests a host's bucket holds: how many may go back to back before the spacing starts."""
    redirect_sites: tuple[frozenset[str], ...] = REDIRECT_SITES
    """Groups of origins (``scheme://host[:port]``) a redirect may cross between."""

    def __post_init__(self) -> None:
        if self.rate_burst < 1:
            raise ValueError("rate_burst must be at least 1")

    @property
    def user_agent(self) -> str:
        contact = f"; +{self.contact}" if self.contact else ""
        return f"forum-monitor/{__version__} (community health monitor{contact})"


@dataclass(slots=True)
class Response:
    status: int
    url: str
    headers: httpx.Headers
    content: bytes

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def validators(self) -> dict[str, str]:
        found = {}
        if etag := self.headers.get("etag"):
            found["etag"] = etag
        if modified := self.headers.get("last-modified"):
            found["last_modified"] = modified
        return found

    def json(self) -> Any:
        """The body as JSON; an HTML error page or truncated body is a ``MalformedResponse``."""
        host = httpx.URL(self.url).host
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            kind = self.headers.get("content-type", "unknown type").split(";")[0]
            raise MalformedResponse(
                f"expected JSON from {host}, got {for_log(kind)} that does not parse "
                f"({exc.__class__.__name__})",
                host=host,
                url=self.url,
            ) from exc


def origin(url: httpx.URL) -> str:
    """``scheme://host:port`` of ``url``, the port spelled out even when it is the default."""
    port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def redirect_refusal(
    start: httpx.URL, target: httpx.URL, *, sites: Collection[frozenset[str]] = REDIRECT_SITES
) -> str | None:
    """Why a request to ``start`` may not be redirected to ``target``; None when it may.

    Allowed: the same origin; the same host moving from http to https on the default
    ports; two origins of one group in ``sites``. Never from https to http.
    """
    if target.scheme not in DEFAULT_PORTS:
        return "not an http(s) URL"
    if start.scheme == "https" and target.scheme != "https":
        return "from https down to plain http"
    if origin(target) == origin(start):
        return None
    upgrade = (start.scheme, target.scheme) == ("http", "https")
    if upgrade and target.host == start.host and start.port is None and target.port is None:
        return None  # the same site asking for TLS
    here, there = origin(start), origin(target)
    for group in sites:
        members = {origin(httpx.URL(member)) for member in group}
        if here in members and there in members:
            return None
    return f"another origin than {here}"


def _without_credentials(
    headers: Mapping[str, str], credentials: Collection[str] = ()
) -> dict[str, str]:
    kept_back = CREDENTIAL_HEADERS | {name.lower() for name in credentials}
    return {name: value for name, value in headers.items() if name.lower() not in kept_back}


ERROR_BODY_BYTES = 64 * 1024
"""Most of an error's body read (decoded) when a request asks for it: an API's error object
is a few hundred bytes; anything past this is not one."""


MAX_SERVER_WAIT = 3600.0
"""The longest wait a server can impose (seconds): a longer Retry-After or rate-limit reset
is read as this, so a hostile or broken answer cannot stop a community's polls for good."""


def server_wait(seconds: float) -> float:
    """A server-asked wait clamped to [0, ``MAX_SERVER_WAIT``]."""
    return min(max(0.0, seconds), MAX_SERVER_WAIT)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), at most
    ``MAX_SERVER_WAIT``."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" would block the host for good and "nan" compares false with everything
        return server_wait(seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT, not local time
        moment = moment.replace(tzinfo=UTC)
    return server_wait(moment.timestamp() - now)


RESET_IS_EPOCH_ABOVE = 1e9
"""An ``X-Ratelimit-Reset`` this large is a Unix time (GitHub style), not seconds to wait."""


def parse_rate_reset(value: str | None, *, now: float, default: float = 60.0) -> float:
    """Seconds until an ``X-Ratelimit-Reset`` (seconds like Reddit's ``"304"``, or a Unix
    time), at most ``MAX_SERVER_WAIT``."""
    try:
        reset = float(value) if value is not None else default
    except ValueError:
        reset = default
    if not math.isfinite(reset):
        reset = default
    if reset > RESET_IS_EPOCH_ABOVE:
        reset -= now
    return server_wait(reset)


ACCEPT_ENCODING = "gzip, deflate"
"""The content codings every request asks for, and so the only ones a body may come in."""
CODINGS = {"identity": "identity", "gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
"""``Content-Encoding`` tokens read, and the coding each names (RFC 9110: x-gzip is gzip)."""
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


def _zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: method 8, header a multiple of 31)."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0


class BodyReader:
    """One response body as it arrives: undoes its content coding and stops at the cap.

    The cap bounds both the bytes received and the bytes they decode to, as they are
    produced: each ``decompress`` call may yield at most what is left under the cap plus
    one byte, so a few KB that would inflate to gigabytes cost at most the cap in memory
    and in work. A coding we did not ask for (br, zstd, ...) or several stacked
    (``gzip, gzip``) are refused before a byte is read: each layer would multiply what a
    byte can expand to, and nothing we poll needs them.
    """

    def __init__(self, *, encoding: str | None, cap: int, host: str, url: str) -> None:
        self.cap = cap
        self.host = host
        self.url = url
        self.coding = self._coding(encoding)
        self.received = 0
        self.size = 0
        self._parts: list[bytes] = []
        self._head = b""
        """A deflate body's first bytes, until there are two to tell zlib from raw deflate."""
        self._inflater: zlib._Decompress | None = None
        if self.coding == "gzip":
            self._inflater = zlib.decompressobj(_GZIP_WBITS)

    def _coding(self, encoding: str | None) -> str:
        tokens = [t.strip().lower() for t in (encoding or "").split(",")]
        codings = [CODINGS.get(t, t) for t in tokens if t]
        layers = [c for c in codings if c != "identity"]
        if len(layers) > 1:
            raise MalformedResponse(
                f"body from {self.host} has stacked encodings {for_log(encoding)}; "
                f"only one of {ACCEPT_ENCODING} is read",
                host=self.host,
                url=self.url,
            )
        if layers and layers[0] not in CODINGS:
            raise MalformedResponse(
                f"body from {self.host} is encoded {for_log(encoding)}, which we did not "
                f"ask for (Accept-Encoding: {ACCEPT_ENCODING})",
                host=self.host,
                url=self.url,
            )
        return layers[0] if layers else "identity"

    def feed(self, data: bytes) -> None:
        """Take the next bytes off the wire; raises once the body passes the cap."""
        self.received += len(data)
        if self.received > self.cap:
            coded = "" if self.coding == "identity" else f" before decoding ({self.coding})"
            raise self._too_large(coded)
        if self.coding == "identity":
            self._keep(data)
            return
        if self._inflater is None:  # deflate: zlib-wrapped as RFC 9110 says, or raw as IIS sent
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            wbits = _ZLIB_WBITS if _zlib_header(data) else _RAW_DEFLATE_WBITS
            self._inflater = zlib.decompressobj(wbits)
        self._inflate(self._inflater, data)

    def _inflate(self, inflater: zlib._Decompress, data: bytes) -> None:
        while data and not inflater.eof:  # bytes after the end of the stream are ignored
            try:
                # room + 1 (0 would mean "no limit"): a call that fills it has passed the
                # cap and raises in ``_keep``; one that does not took all of ``data``
                out = inflater.decompress(data, self.cap - self.size + 1)
            except zlib.error as exc:
                raise MalformedResponse(
                    f"body from {self.host} does not decode as {self.coding} ({exc})",
                    host=self.host,
                    url=self.url,
                ) from exc
            self._keep(out)
            data = inflater.unconsumed_tail

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.cap:
            raise self._too_large(
                "" if self.coding == "identity" else f" once decoded ({self.coding})"
            )
        if data:
            self._parts.append(data)

    def _too_large(self, how: str) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"body from {self.host} passed the {self.cap}-byte cap{how}",
            host=self.host,
            url=self.url,
        )

    def finish(self) -> bytes:
        """The whole decoded body; a compressed stream cut short is a ``MalformedResponse``."""
        cut = self.coding != "identity" and self.received > 0
        if cut and (self._inflater is None or not self._inflater.eof):
            raise MalformedResponse(
                f"{self.coding} body from {self.host} ends before its stream does",
                host=self.host,
                url=self.url,
            )
        return b"".join(self._parts)


@dataclass
class _HostState:
    limiter: AsyncLimiter
    per_minute: float
    blocked_until: float = 0.0


@dataclass
class RequestCounter:
    """Counts the requests one poll sends (retries included)."""

    requests: int = 0
    not_modified: int = 0
    hosts: set[str] = field(default_factory=set)


class PoliteClient:
    """An ``httpx.AsyncClient`` wrapped in the policy above; one per service."""

    def __init__(
        self,
        *,
        policy: HttpPolicy,
        telemetry: Telemetry,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        default_per_minute: float = 60.0,
    ) -> None:
        self.policy = policy
        self._telemetry = telemetry
        self._sleep = sleep
        self._clock = clock
        self._default_per_minute = default_per_minute
        self._hosts: dict[str, _HostState] = {}
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                policy.read_timeout, connect=policy.connect_timeout, pool=policy.connect_timeout
            ),
            headers={"User-Agent": policy.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            follow_redirects=False,  # followed by ``_follow``, under the rules above
            # a jar that keeps no cookie: nothing we poll needs one, and a kept one would
            # go to every port of its host (cookies know no ports), so to another origin
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def set_rate(self, host: str, per_minute: float) -> None:
        """Allow at most ``per_minute`` requests to ``host`` (the lowest rate asked wins)."""
        if not per_minute > 0:
            raise ValueError(f"rate for {host!r} must be greater than zero, not {per_minute}")
        state = self._hosts.get(host)
        if state is None or per_minute < state.per_minute:
            blocked = state.blocked_until if state else 0.0
            self._hosts[host] = _HostState(self._leaky_bucket(per_minute), per_minute, blocked)

    def _leaky_bucket(self, per_minute: float) -> AsyncLimiter:
        # aiolimiter lets ``max_rate`` requests through back to back, so the bucket is
        # sized by the burst and drained over burst * spacing: one request every
        # 60 / per_minute seconds once the (small) burst is spent
        burst = self.policy.rate_burst
        return AsyncLimiter(max_rate=burst, time_period=burst * 60.0 / per_minute)

    def blocked_until(self, host: str) -> float:
        state = self._hosts.get(host)
        return state.blocked_until if state else 0.0

    def _host(self, host: str) -> _HostState:
        if host not in self._hosts:
            self.set_rate(host, self._default_per_minute)
        return self._hosts[host]

    def _block(self, host: str, seconds: float, why: str) -> None:
        state = self._host(host)
        until = self._clock() + seconds
        if until > state.blocked_until:
            log.debug("not asking %s again for %.1fs (%s)", host, seconds, why)
            state.blocked_until = until

    async def _wait_turn(self, host: str, url: str) -> None:
        """Wait out the host's block and then its rate limit; a long block raises."""
        state = self._host(host)
        while True:
            await self._wait_unblocked(state, host, url)
            until = state.blocked_until
            await state.limiter.acquire()
            if state.blocked_until <= until:
                return  # nobody pushed the block back while we queued for the bucket

    async def _wait_unblocked(self, state: _HostState, host: str, url: str) -> None:
        while (wait := state.blocked_until - self._clock()) > 0:
            if wait > self.policy.max_retry_wait:
                raise RateLimited(
                    f"{host} asked us to wait {wait:.0f}s more before the next request",
                    host=host,
                    url=url,
                    status=429,
                    retry_after=wait,
                )
            until = state.blocked_until
            await self._sleep(wait)
            if state.blocked_until <= until:
                return  # not pushed back meanwhile (re-checking would spin on a test's sleep)

    def note_remaining(self, host: str, remaining: float) -> None:
        """Set ``host``'s rate-limit headroom from what a source read in a body (Stack
        Exchange's ``quota_remaining``); not finite is ignored, below zero is zero."""
        if math.isfinite(remaining):
            self._telemetry.rate_limit_remaining.labels(host=host).set(max(0.0, remaining))

    def _note_rate_headers(self, host: str, headers: httpx.Headers) -> None:
        left = _remaining(headers)
        if left is not None:
            reset = parse_rate_reset(headers.get("x-ratelimit-reset"), now=self._clock())
            self.note_rate_limit(host, remaining=left, reset_after=reset)

    def note_rate_limit(self, host: str, *, remaining: float, reset_after: float) -> None:
        """What a source says is left of ``host``'s budget (a header, or a field of the
        body as GitHub's GraphQL ``rateLimit``): the gauge shows it, and a spent budget
        pauses the host for ``reset_after`` seconds (at most ``MAX_SERVER_WAIT``)."""
        if not math.isfinite(remaining):
            return
        self._telemetry.rate_limit_remaining.labels(host=host).set(remaining)
        if remaining < 1:
            self._block(host, server_wait(reset_after), "rate-limit budget spent")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.policy.backoff_cap, self.policy.backoff_base * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        json_body: Any = None,
        error_body: bool = False,
    ) -> Response:
        host = httpx.URL(url).host
        cap = self.policy.max_body_bytes
        async with asyncio.timeout(self.policy.total_timeout):
            async with self._client.stream(
                method, url, params=params, headers=headers, data=data, json=json_body, auth=auth
            ) as reply:
                if not 200 <= reply.status_code < 300:
                    # the body of an error or a redirect is left unread (leaving the
                    # ``stream`` block drops the connection) unless the caller reads its
                    # errors there, and then only its first ERROR_BODY_BYTES
                    content = b""
                    if error_body and reply.status_code not in REDIRECT_STATUSES:
                        content = await _error_body(reply, cap=min(cap, ERROR_BODY_BYTES))
                    return Response(reply.status_code, str(reply.url), reply.headers, content)
                declared = reply.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap:
                    raise ResponseTooLarge(
                        f"{host} announced {int(declared)} bytes, over the {cap}-byte cap",
                        host=host,
                        url=str(reply.url),
                    )
                body = BodyReader(
                    encoding=reply.headers.get("content-encoding"),
                    cap=cap,
                    host=host,
                    url=str(reply.url),
                )
                async for chunk in _raw(reply):
                    body.feed(chunk)
                return Response(reply.status_code, str(reply.url), reply.headers, body.finish())

    async def _exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        json_body: Any = None,
        error_body: bool = False,
    ) -> Response:
        """One attempt, counted in ``http_requests_total``; httpx errors become ``FetchError``."""
        host = httpx.URL(url).host
        requests = self._telemetry.http_requests
        try:
            response = await self._send_once(
                method, url, params, headers, data, auth, json_body, error_body=error_body
            )
        except (ResponseTooLarge, MalformedResponse):  # the status came, the body did not
            requests.labels(host=host, code="error").inc()
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            requests.labels(host=host, code="error").inc()
            raise TransportError(
                f"timed out talking to {host}", host=host, url=url, timeout=True
            ) from exc
        except httpx.HTTPError as exc:  # connect errors, resets, protocol errors
            requests.labels(host=host, code="error").inc()
            raise TransportError(
                f"connection to {host} failed ({exc.__class__.__name__})", host=host, url=url
            ) from exc
        requests.labels(host=host, code=status_label(response.status)).inc()
        self._note_rate_headers(host, response.headers)
        return response

    def _status_failure(
        self, host: str, url: str, response: Response, attempt: int
    ) -> HTTPStatusError:
        """The error for a non-success status; a 429 (or 503 with Retry-After) blocks the host."""
        status = response.status
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._clock())
        spent = _remaining(response.headers)
        if retry_after is None and status in (403, 429) and spent is not None and spent < 1:
            # GitHub's answer to a spent budget: 403 (or 429) until X-RateLimit-Reset
            reset = response.headers.get("x-ratelimit-reset")
            retry_after = parse_rate_reset(reset, now=self._clock())
        if status == 429 or (status in (403, 503) and retry_after is not None):
            wait = retry_after if retry_after is not None else self._backoff(attempt + 2)
            self._block(host, wait, f"answered {status}")
            return RateLimited(
                f"{host} answered {status}; retry after {wait:.0f}s",
                host=host,
                url=url,
                status=status,
                retry_after=wait,
                body=response.content,
            )
        return HTTPStatusError(
            f"{host} answered {status}", host=host, url=url, status=status, body=response.content
        )

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        credentials: Mapping[str, str] | None = None,
        validators: Mapping[str, str] | None = None,
        counter: RequestCounter | None = None,
        error_body: bool = False,
    ) -> Response:
        """GET ``url`` under the policy; a 304 is returned, other failures raise ``FetchError``
        (carrying the start of their body when ``error_body`` asks for it)."""
        return await self.request(
            "GET",
            url,
            params=params,
            headers=headers,
            credentials=credentials,
            validators=validators,
            counter=counter,
            error_body=error_body,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        credentials: Mapping[str, str] | None = None,
        validators: Mapping[str, str] | None = None,
        counter: RequestCounter | None = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        json: Any = None,
        error_body: bool = False,
    ) -> Response:
        """Send one request under the policy. A POST carries a form (``data``: token
        endpoints) or a JSON body (``json``: GraphQL queries), and is never redirected.

        ``credentials`` are headers that authenticate us to ``url``'s origin (an API key,
        a bearer token): sent there and to no other origin a redirect leads to, like
        ``auth`` and the ``CREDENTIAL_HEADERS`` in ``headers``.
        """
        sent_headers = _conditional(headers, validators)
        attempt = 0
        failure: FetchError
        while True:
            try:
                response = await self._follow(
                    method,
                    url,
                    params=params,
                    headers=sent_headers,
                    credentials=credentials or {},
                    data=data,
                    auth=auth,
                    json_body=json,
                    counter=counter,
                    error_body=error_body,
                )
            except TransportError as exc:
                if isinstance(exc.__cause__, _NOT_TRANSIENT):
                    raise
                failure = exc
            else:
                if response.status < 300 or response.status == 304:
                    if response.not_modified and counter is not None:
                        counter.not_modified += 1
                    return response
                host = httpx.URL(response.url).host  # where a redirect led, if one did
                failure = self._status_failure(host, response.url, response, attempt)
                if isinstance(failure, RateLimited):
                    too_long = failure.retry_after > self.policy.max_retry_wait
                    if too_long or attempt >= self.policy.max_retries:
                        raise failure
                    attempt += 1
                    continue  # _wait_turn sleeps until the host's block ends
                if response.status < 500:
                    raise failure
            if attempt >= self.policy.max_retries:
                raise failure
            await self._sleep(self._backoff(attempt))
            attempt += 1

    async def _follow(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        credentials: Mapping[str, str],
        data: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        counter: RequestCounter | None,
        json_body: Any = None,
        error_body: bool = False,
    ) -> Response:
        """One request and the redirects it may follow, each hop a request of its own (its
        host's turn, its count, its status); credentials go to ``url``'s origin only."""
        start = target = httpx.URL(url)
        for hop in range(MAX_REDIRECTS + 1):
            home = origin(target) == origin(start)
            sent = (
                {**headers, **credentials} if home else _without_credentials(headers, credentials)
            )
            await self._wait_turn(target.host, str(target))
            if counter is not None:
                counter.requests += 1
                counter.hosts.add(target.host)
            response = await self._exchange(
                method,
                str(target),
                params if hop == 0 else None,  # a Location carries its own query
                sent,
                data,
                auth if home else None,
                json_body,
                error_body=error_body,
            )
            if response.status not in REDIRECT_STATUSES or "location" not in response.headers:
                return response
            target = self._redirect_target(start, method, response)
        last = httpx.URL(response.url)
        raise RedirectRefused(
            f"{last.host} redirected one time too many (a request to {start.host} may take "
            f"{MAX_REDIRECTS} redirects); the last pointed to {for_log(str(target))}",
            host=last.host,
            url=response.url,
            target=str(target),
        )

    def _redirect_target(self, start: httpx.URL, method: str, response: Response) -> httpx.URL:
        """Where ``response`` redirects to, resolved against its URL; ``RedirectRefused``
        when the rules do not let a request to ``start`` go there."""
        here = httpx.URL(response.url)
        location = response.headers["location"]
        try:
            target = here.join(location)
        except httpx.InvalidURL as exc:
            raise RedirectRefused(
                f"{here.host} redirected to {for_log(location)}, which is no URL",
                host=here.host,
                url=response.url,
                target=location,
            ) from exc
        why = redirect_refusal(start, target, sites=self.policy.redirect_sites)
        if why is None and method != "GET":
            why = f"a {method} is not redirected (its body may hold a secret)"
        if why is not None:
            raise RedirectRefused(
                f"{here.host} redirected to {for_log(target.host)} "
                f"({for_log(str(target))}), not followed: {why}",
                host=here.host,
                url=response.url,
                target=str(target),
            )
        return target


def _remaining(headers: httpx.Headers) -> float | None:
    """``X-Ratelimit-Remaining`` as a finite number, or None."""
    try:
        left = float(headers.get("x-ratelimit-remaining", "nan"))
    except ValueError:
        return None
    return left if math.isfinite(left) else None


async def _error_body(reply: httpx.Response, *, cap: int) -> bytes:
    """Up to ``cap`` decoded bytes of an error's body; what does not decode, or does not end
    within the cap, is no error object and is dropped (the status is what went wrong)."""
    host = httpx.URL(str(reply.url)).host
    try:
        body = BodyReader(
            encoding=reply.headers.get("content-encoding"), cap=cap, host=host, url=str(reply.url)
        )
        async for chunk in _raw(reply):
            body.feed(chunk)
        return body.finish()
    except (ResponseTooLarge, MalformedResponse, httpx.HTTPError):
        return b""


def _raw(reply: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they came, still encoded: httpx's own decoding inflates each
    network chunk whole (64 KiB of gzip can be 64 MiB) before a cap could be checked.

    Read from the stream itself rather than ``aiter_raw``, which refuses a body that a
    ``MockTransport`` handler built from bytes (httpx reads those when they are made)."""
    stream = reply.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("an AsyncClient's response has an async stream")
    return aiter(stream)


_NOT_TRANSIENT = (httpx.UnsupportedProtocol,)
"""Transport failures that the same request would meet again; not retried."""


def _conditional(
    headers: Mapping[str, str] | None, validators: Mapping[str, str] | None
) -> dict[str, str]:
    """``headers`` plus If-None-Match / If-Modified-Since from a previous response's validators."""
    sent = dict(headers or {})
    if validators:
        if etag := validators.get("etag"):
            sent["If-None-Match"] = etag
        if modified := validators.get("last_modified"):
            sent["If-Modified-Since"] = modified
    return sent
