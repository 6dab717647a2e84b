"""The ``forum-monitor`` command. No traceback reaches the user: every failure is one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.config import Settings, config_path, load_settings, parse_listen
from monitor.errors import ConfigError, ForumMonitorError

log = logging.getLogger("monitor")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


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

    once = commands.add_parser("poll-once", help="poll every community once, then exit")
    once.add_argument("--config", help="config file (or FORUM_MONITOR_CONFIG)")
    once.add_argument("--json", action="store_true", help="one JSON object per community")

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
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.file)
    if path is None:
        raise ConfigError(["no config file given (argument or FORUM_MONITOR_CONFIG)"])
    settings = load_settings(path)
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

    settings = _settings(args.config)
    _configure_logging(settings.log_level if not args.json else "warning")

    async def run() -> list[dict[str, object]]:
        service = Service(settings)
        try:
            await service.open()
            return [outcome.as_json() for outcome in await service.poll_all()]
        finally:
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


def cmd_serve(args: argparse.Namespace) -> int:
    from monitor import server
    from monitor.api import create_app
    from monitor.service import Service

    settings = _settings(args.config)
    listen = args.listen or settings.listen
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ConfigError([f"--listen: {exc}"]) from None
    _configure_logging(settings.log_level)
    service = Service(settings)
    from monitor.store.db import make_engine

    make_engine(settings.resolved_database_url()).dispose()  # fail fast, one line, if unreachable
    app = create_app(service)
    log.info("serving on http://%s:%d/metrics", host, port)
    server.run(app, host=host, port=port)
    if not service.migrated:
        return EXIT_FAILURE  # the lifespan failed to start; uvicorn logged why
    log.info("stopped")
    return EXIT_OK


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
