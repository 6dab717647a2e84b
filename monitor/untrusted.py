"""Text from servers forum-monitor does not control, made safe to store and to log.

Anything a forum sends (ids, names, titles, bodies, links, error fields) may hold
what neither store accepts (NUL bytes: PostgreSQL refuses them; unpaired UTF-16
surrogates: no UTF-8 encoder takes them) or what would forge a log line (control
characters, newlines, megabytes). ``clean_text`` is for what is kept,
``for_log`` for what is logged, and ``without_userinfo`` takes the
``user:password@`` out of any URL before it is kept, echoed or logged.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""C0 controls and DEL, except tab, newline and carriage return."""

LOG_TEXT_LIMIT = 120
"""Characters of a remote string a log line quotes at most."""


def clean_text(value: str) -> str:
    """``value`` without NUL and other control characters (tab, newline and carriage return
    stay), unpaired surrogates replaced by U+FFFD."""
    if value.isascii() and value.isprintable():
        return value  # the common case, without a regex pass
    return _CONTROL.sub("", _SURROGATE.sub("\ufffd", value))


def for_log(value: object, *, limit: int = LOG_TEXT_LIMIT) -> str:
    """A remote value quoted for one log line: escaped (no newline or control character
    survives) and cut to ``limit`` characters, with the cut marked."""
    text = str(value)
    cut = len(text) > limit
    quoted = ascii(text[:limit])
    return f"{quoted}..." if cut else quoted


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (everything up to the host's last ``@``), so no
    credential in a URL is ever kept, echoed or logged."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url  # the common case: nothing to take out
    host = authority.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{tail}"
