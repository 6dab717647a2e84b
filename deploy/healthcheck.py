"""The container's HEALTHCHECK: exit 0 when ``GET /healthz`` answers 200, else 1.

Standard library only (the image carries no curl). It asks the port of
``FORUM_MONITOR_LISTEN`` (the image sets ``0.0.0.0:9808``) on 127.0.0.1, over plain
HTTP and, when that fails because ``--web.config.file`` turned on TLS, over HTTPS
without verifying the certificate: it checks that this process answers, not who it
is. ``/healthz`` needs no password even when basic auth is on.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
import urllib.request

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def healthz_urls(listen: str) -> list[str]:
    host, _, port = listen.rpartition(":")
    if host in WILDCARDS:
        host = "127.0.0.1"
    return [f"http://{host}:{port}/healthz", f"https://{host}:{port}/healthz"]


def healthy(url: str, *, timeout: float) -> bool:
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return bool(response.status == 200)
    except (OSError, ValueError, http.client.HTTPException):
        return False


def main() -> int:
    listen = os.environ.get("FORUM_MONITOR_LISTEN", "127.0.0.1:9808")
    return 0 if any(healthy(url, timeout=3) for url in healthz_urls(listen)) else 1


if __name__ == "__main__":
    sys.exit(main())
