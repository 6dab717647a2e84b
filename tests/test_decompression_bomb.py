"""A decompression bomb against the whole program: ``poll-once`` in a child process.

Peak memory is measured as the kernel counts it. Each ``poll-once`` runs under a fresh
Python process that only starts it, waits for it and prints
``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest resident set of any child that
process waited for, which is that one child. (Read in this test process the same
number would be the largest of every child pytest ever waited for: a browser or
database started by an earlier test would hide the poll's.) The same poll of a
harmless body, run the same way, is the baseline; only the difference is asserted.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from tests.support import REPO_ROOT, service_config
from tests.test_poll_cycle import to_toml

MIB = 1024 * 1024
CAP = MIB
MARGIN = 32 * MIB
"""What a poll may grow by beyond the cap: allocator slack, a second copy of the body."""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only"
)

MEASURED = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=180)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": run.returncode, "out": run.stdout, "err": run.stderr, "kib": peak}))
"""
"""Runs argv, then prints its exit code, output and peak RSS (its only child's)."""


def feed(name: str, entries: int) -> bytes:
    now = time.time()
    items = "".join(
        f"<item><guid>{name}-{i}</guid><title>post {i}</title>"
        f"<pubDate>{format_datetime(datetime.fromtimestamp(now - 3600 * (i + 1), UTC))}"
        f"</pubDate></item>"
        for i in range(entries)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>'
        f"{items}</channel></rss>"
    ).encode()


def gzip_of_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, made a MiB at a time (never ``size`` bytes at once)."""
    packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    parts = [packer.compress(bytes(MIB)) for _ in range(size // MIB)]
    return b"".join(parts) + packer.flush()


def serving(target: FakeResponse) -> Callable[[Request], FakeResponse]:
    """The bomb (or its harmless stand-in) at /target.xml, two calm feeds beside it."""
    calm = {f"/calm{n}.xml": FakeResponse(200, feed(f"calm{n}", 3)) for n in (1, 2)}

    def handler(request: Request) -> FakeResponse:
        if request.path == "/target.xml":
            return target
        return calm.get(request.path, FakeResponse(404))

    return handler


def this_checkout() -> dict[str, str]:
    """The environment, with this checkout first on the path (not an installed copy)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def poll_once_measured(base_url: str, workdir: Path) -> tuple[dict[str, Any], int]:
    """(outcome per community, peak RSS in bytes) of one ``poll-once`` in a fresh process."""
    workdir.mkdir()
    communities = [
        {"id": name, "source": "rss", "url": f"{base_url}/{name}.xml"}
        for name in ("target", "calm1", "calm2")
    ]
    config = workdir / "config.toml"
    config.write_text(to_toml(service_config(workdir, communities, max_body_bytes=CAP)))
    argv = [sys.executable, "-m", "monitor", "poll-once", "--config", str(config), "--json"]
    run = subprocess.run(
        [sys.executable, "-c", MEASURED, *argv],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=workdir,
        env=this_checkout(),
        check=True,
    )
    report = json.loads(run.stdout)
    assert report["code"] in (0, 1), report["err"]  # 1: a community's poll failed
    lines = [json.loads(line) for line in report["out"].splitlines()]
    return {line["community"]: line for line in lines}, report["kib"] * 1024


def test_decompression_bombs_cost_a_poll_no_more_than_the_cap(tmp_path: Path) -> None:
    harmless = FakeResponse(200, gzip.compress(feed("target", 3)), {"Content-Encoding": "gzip"})
    inner = gzip_of_zeros(256 * MIB)
    bombs = {
        # gzip of gzip of 256 MiB of zeros: about 1 KB on the wire
        "stacked": FakeResponse(200, gzip.compress(inner), {"Content-Encoding": "gzip, gzip"}),
        # one gzip layer, 256 KiB on the wire, under the 1 MiB cap until it is inflated
        "single": FakeResponse(200, inner, {"Content-Encoding": "gzip"}),
    }
    assert len(bombs["stacked"].body) < 4096
    assert len(bombs["single"].body) < CAP

    with FakeForumServer(serving(harmless)) as server:
        base, base_peak = poll_once_measured(server.base_url, tmp_path / "baseline")
    assert {c: (o["outcome"], o["new_items"]) for c, o in base.items()} == {
        "target": ("ok", 3),
        "calm1": ("ok", 3),
        "calm2": ("ok", 3),
    }

    peaks, outcomes = {}, {}
    for name, bomb in bombs.items():
        with FakeForumServer(serving(bomb)) as server:
            outcomes[name], peaks[name] = poll_once_measured(server.base_url, tmp_path / name)
    print(
        f"peak RSS: baseline {base_peak / MIB:.1f} MiB, "
        + ", ".join(
            f"{name} {peak / MIB:.1f} MiB ({(peak - base_peak) / MIB:+.1f})"
            for name, peak in peaks.items()
        )
    )
    for name, peak in peaks.items():
        assert peak - base_peak <= CAP + MARGIN, (name, peak, base_peak)
    assert outcomes["stacked"]["target"]["outcome"] == "malformed"
    assert outcomes["single"]["target"]["outcome"] == "too_large"
    for polled in outcomes.values():
        # the other communities are polled as if nothing happened
        others = {c: (o["outcome"], o["new_items"]) for c, o in polled.items() if c != "target"}
        assert others == {"calm1": ("ok", 3), "calm2": ("ok", 3)}
