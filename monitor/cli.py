"""The ``forum-monitor`` command. No traceback reaches the user: every failure is one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from monitor import __version__
from monitor.config import (
    CommunityBase,
    Settings,
    config_path,
    config_warnings,
    load_settings,
    parse_listen,
)
from monitor.errors import ConfigError, ForumMonitorError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from monitor.backfill import BackfillOutcome
    from monitor.webconfig import WebConfig

log = logging.getLogger("monitor")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


ACCEPT_NEW_KEY_HELP = (
    "use a pseudonym key other than the one the store was written with: every author is "
    "counted anew from now, and the status page and API say since when"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="forum-monitor",
        description="Watch public discussion communities and export their health to Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the service (polls, /metrics, /api)")
    serve.add_argument("--config", help="config file (or FORUM_MONITOR_CONFIG)")
    serve.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:9808)")
    serve.add_argument("--accept-new-key", action="store_true", help=ACCEPT_NEW_KEY_HELP)
    serve.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS and basic auth, in the Prometheus exporters' format ([server] web_config_file)",
    )

    once = commands.add_parser("poll-once", help="poll every community once, then exit")
    once.add_argument("--config", help="config file (or FORUM_MONITOR_CONFIG)")
    once.add_argument("--json", action="store_true", help="one JSON object per community")
    once.add_argument("--accept-new-key", action="store_true", help=ACCEPT_NEW_KEY_HELP)

    backfill = commands.add_parser(
        "backfill", help="fetch communities' past activity into the store, then exit"
    )
    backfill.add_argument("--config", help="config file (or FORUM_MONITOR_CONFIG)")
    backfill.add_argument(
        "--community",
        action="append",
        metavar="ID",
        help="a community id; repeat for more (default: every enabled community)",
    )
    backfill.add_argument(
        "--days", type=int, help="how far back (default: each community's history_days)"
    )
    backfill.add_argument("--json", action="store_true", help="one JSON object per community")
    backfill.add_argument("--accept-new-key", action="store_true", help=ACCEPT_NEW_KEY_HELP)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", nargs="?", help="config file (or FORUM_MONITOR_CONFIG)")

    database = commands.add_parser("db", help="database schema")
    database.add_argument("action", choices=["upgrade", "current"])
    database.add_argument("--config", help="config file (or FORUM_MONITOR_CONFIG)")

    demo = commands.add_parser(
        "demo", help="offline demo: the service watching simulated forums on 127.0.0.1"
    )
    demo.add_argument("--listen", default="127.0.0.1:9808", help="HOST:PORT (default %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated history")
    demo.add_argument("--no-live", action="store_true", help="no live posting after the history")
    demo.add_argument(
        "--speed", type=float, default=360.0, help="live posting speed-up (default %(default)s)"
    )

    export = commands.add_parser(
        "export-openmetrics",
        help="the store's daily history as OpenMetrics (promtool tsdb create-blocks-from)",
    )
    export.add_argument("--config", help="config file (or FORUM_MONITOR_CONFIG)")
    export.add_argument("--out", required=True, help="OpenMetrics file to write")
    export.add_argument("--days", type=int, default=90, help="complete UTC days (default 90)")
    export.add_argument("--job", default="forum-monitor", help="job label ('' for none)")
    export.add_argument("--instance", help="instance label (default: the listen address)")
    return parser


def _settings(path: str | None) -> Settings:
    return load_settings(config_path(path))


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # per-request lines from the HTTP stack would carry URLs of every page; keep them quiet
    # (httpcore's debug traces quote whole response headers as a server sent them)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.file)
    if path is None:
        raise ConfigError(["no config file given (argument or FORUM_MONITOR_CONFIG)"])
    settings = load_settings(path)
    _web_config(settings.server.web_config_file)
    for warning in config_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: ok ({len(settings.communities)} communities)")
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    from monitor.store import db

    settings = _settings(args.config)
    engine = db.make_engine(settings.resolved_database_url())
    try:
        if args.action == "upgrade":
            db.upgrade(engine)
            print(f"{db.describe_url(settings.resolved_database_url())}: schema at head")
        else:
            print(db.current_revision(engine) or "(empty database)")
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_poll_once(args: argparse.Namespace) -> int:
    from monitor.service import Service
    from monitor.store.single_poller import PollerLock

    settings = _settings(args.config)
    _configure_logging(settings.log_level if not args.json else "warning")

    async def run() -> list[dict[str, object]]:
        service = Service(settings, accept_new_key=args.accept_new_key)
        lock = PollerLock(settings.resolved_database_url())
        try:
            await service.open()
            lock.acquire()  # a serve on the same SQLite store already polls it
            return [outcome.as_json() for outcome in await service.poll_all()]
        finally:
            lock.release()
            await service.stop()

    outcomes = asyncio.run(run())
    for outcome in outcomes:
        if args.json:
            print(json.dumps(outcome, sort_keys=True))
        else:
            print(
                f"{outcome['community']}: {outcome['outcome']}, {outcome['new_items']} new items, "
                f"{outcome['requests']} requests"
            )
    return EXIT_OK if all(o["outcome"] in ("ok", "not_modified") for o in outcomes) else 1


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    chosen = _backfill_targets(settings, names=args.community, days=args.days)
    _configure_logging(settings.log_level if not args.json else "warning")
    outcomes = asyncio.run(
        _run_backfill(settings, chosen, days=args.days, accept_new_key=args.accept_new_key)
    )
    for outcome in outcomes:
        if args.json:
            print(json.dumps(outcome.as_json(), sort_keys=True))
        else:
            print(_backfill_line(outcome))
    return EXIT_OK if all(o.outcome in ("ok", "partial") for o in outcomes) else EXIT_FAILURE


def _backfill_targets(
    settings: Settings, *, names: list[str] | None, days: int | None
) -> list[CommunityBase]:
    """The communities named (default: every enabled one); ConfigError for bad arguments."""
    known = {community.id: community for community in settings.communities}
    problems = [
        f"--community: unknown community {name!r} (configured: {', '.join(known) or 'none'})"
        for name in names or []
        if name not in known
    ]
    if days is not None and not 1 <= days <= MAX_BACKFILL_DAYS:
        problems.append(f"--days: must be between 1 and {MAX_BACKFILL_DAYS}")
    if problems:
        raise ConfigError(problems)
    if names:
        return [known[name] for name in dict.fromkeys(names)]
    return [community for community in settings.communities if community.enabled]


async def _run_backfill(
    settings: Settings,
    communities: list[CommunityBase],
    *,
    days: int | None,
    accept_new_key: bool = False,
) -> list[BackfillOutcome]:
    """Backfill one community after the other, with a progress line each on stderr."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from monitor.backfill import Backfiller, BackfillProgress
    from monitor.service import Service

    service = Service(settings, accept_new_key=accept_new_key)
    outcomes: list[BackfillOutcome] = []
    columns = (
        SpinnerColumn(finished_text="-"),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[items]} new items, {task.fields[requests]} requests"),
        TextColumn("{task.fields[reached]}"),
        TimeElapsedColumn(),
    )
    try:
        await service.open()
        assert service.engine and service.client and service.ingestor, "opened above"
        backfiller = Backfiller(
            settings=settings,
            engine=service.engine,
            client=service.client,
            ingestor=service.ingestor,
        )
        with Progress(*columns, console=Console(stderr=True)) as progress:
            for community in communities:
                task = progress.add_task(community.id, items=0, requests=0, reached="")

                def show(step: BackfillProgress, task: TaskID = task) -> None:
                    reached = "" if step.oldest is None else f"back to {_when(step.oldest)}"
                    progress.update(
                        task, items=step.new_items, requests=step.requests, reached=reached
                    )

                wanted = community.history_days if days is None else days
                outcomes.append(await backfiller.run(community, days=wanted, on_progress=show))
                progress.update(task, total=1, completed=1)
    finally:
        await service.stop()
    return outcomes


MAX_BACKFILL_DAYS = 3650


def _when(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


BACKFILL_STOPS = {
    "source_end": " (the source lists nothing older)",
    "no_progress": " (stopped: the source's pages stopped going back in time)",
    "budget": " (stopped: more items than the requested days can hold)",
}


def _backfill_line(outcome: BackfillOutcome) -> str:
    done = (
        f"{outcome.new_items} new items ({outcome.updated_items} updated), "
        f"{_count(outcome.requests, 'request')} in {_count(outcome.steps, 'poll')}"
    )
    if outcome.outcome in ("ok", "partial") and outcome.covered_from is not None:
        note = BACKFILL_STOPS.get(outcome.stopped or "", "")
        return (
            f"{outcome.community}: {outcome.outcome}, {done}; "
            f"complete from {_when(outcome.covered_from)}{note}"
        )
    return f"{outcome.community}: failed ({outcome.outcome}): {outcome.error}; {done} kept"


def cmd_serve(args: argparse.Namespace) -> int:
    from monitor import server
    from monitor.api import create_app
    from monitor.service import Service
    from monitor.store.single_poller import PollerLock
    from monitor.web.auth import BasicAuthUsers

    settings = _settings(args.config)
    listen = args.listen or settings.listen
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ConfigError([f"--listen: {exc}"]) from None
    web = _web_config(args.web_config_file or settings.server.web_config_file)
    _configure_logging(settings.log_level)
    for warning in config_warnings(settings):
        log.warning("config: %s", warning)  # serve may run without check-config ever run
    sockets = server.bind(host, port)
    service = Service(settings, accept_new_key=args.accept_new_key)
    # a store or key that cannot be used stops the start here, in one line, before anything
    # answers (a failure inside the server's lifespan would come out as a traceback)
    service.prepare()
    poller_lock = PollerLock(settings.resolved_database_url())
    poller_lock.acquire()  # held while this process serves (a SIGKILL frees it too)
    url = f"{'https' if web.tls else 'http'}://{server.format_address(host, port)}/metrics"
    server.serve(
        create_app(service, users=BasicAuthUsers(web.users) if web.users else None),
        sockets=sockets,
        service=service,
        limits=settings.server,
        tls=web.tls,
        announce=lambda: log.info("serving on %s%s", url, " (basic auth)" if web.users else ""),
    )
    poller_lock.release()
    log.info("stopped")
    return EXIT_OK


def _web_config(path: str | None) -> WebConfig:
    from pathlib import Path

    from monitor.webconfig import WebConfig, load_web_config

    return load_web_config(Path(path)) if path else WebConfig()


def cmd_export_openmetrics(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from monitor.export import write_export

    settings = _settings(args.config)
    instance = settings.listen if args.instance is None else args.instance
    summary = write_export(
        settings=settings,
        out=Path(args.out),
        now=int(time.time()),
        days=args.days,
        extra_labels=[("job", args.job), ("instance", instance)],
    )
    print(
        f"{args.out}: {summary.samples} samples in {summary.series} series "
        f"of {summary.communities} communities"
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import DemoOptions, run_demo

    try:
        listen = parse_listen(args.listen)
    except ValueError as exc:
        raise ConfigError([f"--listen: {exc}"]) from None
    if args.speed <= 0:
        raise ConfigError(["--speed: must be greater than zero"])
    return run_demo(
        DemoOptions(listen=listen, seed=args.seed, live=not args.no_live, speed=args.speed)
    )


COMMANDS = {
    "serve": cmd_serve,
    "poll-once": cmd_poll_once,
    "backfill": cmd_backfill,
    "check-config": cmd_check_config,
    "db": cmd_db,
    "export-openmetrics": cmd_export_openmetrics,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except ForumMonitorError as exc:
        print(f"forum-monitor: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"forum-monitor: internal error: {exc.__class__.__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
