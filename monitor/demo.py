"""``forum-monitor demo``: the real service watching simulated forums, fully offline.

Starts a fake forum on 127.0.0.1 that speaks the Reddit and Discourse APIs,
loads 120 days of generated history for four communities
(``monitor.fakeforum.scenario.DEMO_PLANS``: a gig-work community declining
after a labelled event 30 days ago, a rival forum that grows, a rival subreddit
some of its departing members move to, a steady control),
then runs the real service against it: the real adapters over real HTTP, the
real store (SQLite in a temporary directory), analysis, /metrics, the status
page and the API. A live poster keeps the forums posting at an accelerated
rate. Ctrl-C or SIGTERM stops the service, the poster and the forums; exit 0.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import Settings, settings_from_mapping
from monitor.fakeforum.scenario import (
    DEMO_KEYWORDS,
    DEMO_PLANS,
    LivePoster,
    Simulation,
    event_day,
)
from monitor.web.view import Annotation, Presentation

log = logging.getLogger(__name__)

HISTORY_DAYS = 120
POLL_INTERVAL = "10s"
DEFAULT_SPEED = 360.0
"""Live posting runs this many times faster than the plans' daily rates (a day in 4 minutes)."""


@dataclass(frozen=True)
class DemoOptions:
    listen: tuple[str, int]
    seed: int = 7
    live: bool = True
    speed: float = DEFAULT_SPEED


def demo_settings(simulation: Simulation, *, workdir: Path) -> Settings:
    """The service's config for the simulated communities (short intervals, 120 days back)."""
    communities: list[dict[str, Any]] = []
    for plan in simulation.plans.values():
        entry: dict[str, Any] = {
            "id": plan.id,
            "source": plan.source,
            "interval": POLL_INTERVAL,
            "history_days": HISTORY_DAYS,
            "base_url": simulation.base_url_for(plan),
        }
        if plan.source == "reddit":
            entry["subreddit"] = plan.forum
        communities.append(entry)
    return settings_from_mapping(
        {
            "data_dir": str(workdir),
            "database_url": f"sqlite:///{workdir / 'demo.db'}",
            "pseudonym_key": secrets.token_hex(16),
            "log_level": "warning",
            "keywords": DEMO_KEYWORDS,
            "http": {"rate_per_minute": {"127.0.0.1": 6000}},
            "communities": communities,
        }
    )


def demo_presentation(simulation: Simulation, *, now: int) -> Presentation:
    annotations = tuple(
        Annotation(plan.id, event_day(plan.event, now=now), plan.event.label)
        for plan in simulation.plans.values()
        if plan.event is not None
    )
    return Presentation(simulated=True, annotations=annotations)


def run_demo(options: DemoOptions) -> int:
    """Run until Ctrl-C / SIGTERM; returns the exit status."""
    from monitor import server
    from monitor.api import create_app
    from monitor.cli import _configure_logging
    from monitor.service import Service

    host, port = options.listen
    sockets = server.bind(host, port)  # first: a port in use costs nothing and says so
    workdir = Path(tempfile.mkdtemp(prefix="forum-monitor-demo-"))
    now = int(time.time())
    simulation = Simulation(DEMO_PLANS).start()
    poster: LivePoster | None = None
    try:
        posts = simulation.load_history(now=now, days=HISTORY_DAYS, seed=options.seed)
        settings = demo_settings(simulation, workdir=workdir)
        _configure_logging(settings.log_level)
        service = Service(settings)
        app = create_app(service, presentation=demo_presentation(simulation, now=now))
        base = f"http://{server.format_address(host, port)}"

        def announce() -> None:
            nonlocal poster
            if options.live:
                poster = LivePoster(
                    simulation, speed=options.speed, seed=options.seed, now0=now
                ).start()
            print(
                f"forum-monitor demo: SIMULATED DATA, fully offline.\n"
                f"  {posts} posts of {HISTORY_DAYS} days generated for {len(DEMO_PLANS)} "
                f"communities on a fake forum at {simulation.base_url}"
                + (f"; live posting at {options.speed:g}x" if options.live else "")
                + f"\n  status page  {base}/\n  metrics      {base}/metrics\n"
                f"  API docs     {base}/docs  (JSON: {base}/api/v1/communities)\n"
                "  the first polls backfill the history within seconds; Ctrl-C stops",
                flush=True,
            )

        server.serve(
            app, sockets=sockets, service=service, limits=settings.server, announce=announce
        )
        print("forum-monitor demo: stopped", flush=True)
        return 0
    finally:
        for sock in sockets:
            sock.close()
        if poster is not None:
            poster.stop()
        simulation.stop()
        shutil.rmtree(workdir, ignore_errors=True)
