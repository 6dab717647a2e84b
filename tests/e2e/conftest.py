"""The end-to-end stack, all on 127.0.0.1: fake forums, the service, Prometheus, Alertmanager.

One stack per module (starting it costs seconds, not the tests). Every process is
started through ``Processes`` and stopped by its PID in the fixture's teardown,
also when a test or the setup fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from monitor.fakeforum.discourse import FakeDiscourse
from monitor.fakeforum.reddit import FakeReddit
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request, Router
from tests.deploy.rule_durations import write_test_sized_rules
from tests.e2e import scenario
from tests.support import REPO_ROOT, free_port, missing, serve_argv

POLL_INTERVAL = "2s"
T = TypeVar("T")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not installed (Debian packages prometheus, prometheus-alertmanager)")
    return path


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float, every: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Processes:
    """Child processes by name, each stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        try:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        finally:
            log.close()
        self.started[name] = process
        return process

    def log(self, name: str, *, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str) -> None:
        process = self.started.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.terminate()  # signals process.pid only
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: keeps every alert POSTed to /alerts."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, *, alertname: str, status: str = "firing") -> set[str]:
        """Communities of the received alerts called ``alertname`` with ``status``."""
        with self.lock:
            return {
                a["labels"].get("community", "")
                for a in self.alerts
                if a["labels"].get("alertname") == alertname and a["status"] == status
            }

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.alerts)

    def serve(self) -> ThreadingHTTPServer:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = json.loads(body)
                with webhook.lock:
                    webhook.alerts.extend(payload.get("alerts", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}).start()
        return server


class Prometheus:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def api(self, path: str, **params: str | float) -> Any:
        response = httpx.get(f"{self.base_url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(
        self, expr: str, *, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, community: str) -> set[tuple[str, str]]:
        """(alertname, state) of every pending or firing alert of ``community``."""
        return {
            (a["labels"]["alertname"], a["state"])
            for a in self.api("alerts")["alerts"]
            if a["labels"].get("community") == community
        }


@dataclass
class Stack:
    workdir: Path
    processes: Processes
    config: Path
    database: Path
    service_url: str
    prometheus: Prometheus
    webhook: Webhook
    offline: threading.Event
    started: float
    """time.monotonic() when the service was started."""
    now: int
    """Wall-clock seconds the scenario's history was built relative to."""


def build_forums(now: int, offline: threading.Event) -> tuple[Router, int]:
    """The three communities' history in the fakes; returns the router and the post count."""
    reddit = FakeReddit(rate_budget=1_000_000)
    reddit.add_subreddit("gigdecline")
    steady = FakeDiscourse(prefix="/steady")
    gone = FakeDiscourse(prefix="/offline")
    count = 0
    for day in scenario.history(scenario.declining_plan, now=now, prefix="member"):
        threads: dict[int, str] = {}
        for post in day:
            if post.is_thread:
                threads[post.thread] = reddit.add_thread(
                    "gigdecline", created=post.created, author=post.author, title=post.text
                )
            else:
                reddit.add_reply(
                    threads[post.thread], created=post.created, author=post.author, text=post.text
                )
            count += 1
    for fake, plan in ((steady, scenario.steady_plan), (gone, scenario.offline_plan)):
        for day in scenario.history(plan, now=now, prefix="user"):
            topics: dict[int, int] = {}
            for post in day:
                if post.is_thread:
                    first = fake.add_thread(
                        title=f"{post.text} {post.created}",
                        author=post.author,
                        created_at=post.created,
                        text=post.text,
                    )
                    topics[post.thread] = first.topic_id
                else:
                    fake.add_reply(
                        topic_id=topics[post.thread],
                        author=post.author,
                        created_at=post.created,
                        text=post.text,
                    )
                count += 1
    router = Router()

    def unavailable(_request: Request) -> FakeResponse:
        return FakeResponse.json({"error": "maintenance"}, status=503)

    router.add(lambda path: offline.is_set() and path.startswith("/offline"), unavailable)
    reddit.register(router)
    steady.register(router)
    gone.register(router)
    return router, count


def service_config(path: Path, *, forum_url: str, database: Path) -> None:
    communities = [
        ("declining", f'source = "reddit"\nsubreddit = "gigdecline"\nbase_url = "{forum_url}"'),
        ("steady", f'source = "discourse"\nbase_url = "{forum_url}/steady"'),
        ("offline", f'source = "discourse"\nbase_url = "{forum_url}/offline"'),
    ]
    text = (
        f'database_url = "sqlite:///{database}"\n'
        f'data_dir = "{path.parent}"\n'
        'pseudonym_key = "e2e-pseudonym-key-0123456789abcdef"\n'
        "[http]\n"
        "max_retries = 0\n"
        'rate_per_minute = { "127.0.0.1" = 100000 }\n'
    )
    for community, body in communities:
        text += (
            f'[[communities]]\nid = "{community}"\n{body}\n'
            f'interval = "{POLL_INTERVAL}"\nhistory_days = {scenario.HISTORY_DAYS}\n'
        )
    path.write_text(text)


def alertmanager_config(path: Path, *, webhook_url: str) -> None:
    """The deployed config with the test's webhook and second-sized grouping waits."""
    import re

    text = (REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    text = text.replace("http://127.0.0.1:9095/alerts", webhook_url)
    text = re.sub(r"(?m)^(\s+)group_wait: \S+$", r"\1group_wait: 1s", text)
    text = re.sub(r"(?m)^(\s+)group_interval: \S+$", r"\1group_interval: 1s", text)
    assert webhook_url in text
    path.write_text(text)


def prometheus_config(
    path: Path, *, rules: Path | None, alertmanager: str | None, target: str | None
) -> None:
    """Prometheus config as JSON (YAML's subset): 1 s scrapes and evaluations."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)] if rules else [],
        "scrape_configs": [],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    if target:
        config["scrape_configs"] = [
            {"job_name": "forum-monitor", "static_configs": [{"targets": [target]}]}
        ]
    path.write_text(json.dumps(config, indent=2))


def start_prometheus(
    processes: Processes, name: str, *, config: Path, storage: Path, retention: str = "15d"
) -> Prometheus:
    port = free_port()
    processes.start(
        name,
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")
    wait_for(
        f"{name} ready ({processes.log(name)})",
        lambda: httpx.get(f"{prometheus.base_url}/-/ready", timeout=1).status_code == 200,
        timeout=30,
        every=0.2,
    )
    return prometheus


def last_success(service_url: str) -> dict[str, float]:
    """forum_monitor_last_success_timestamp_seconds by community, from the service's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    body = httpx.get(f"{service_url}/metrics", timeout=5).text
    found = {}
    for family in text_string_to_metric_families(body):
        if family.name == "forum_monitor_last_success_timestamp_seconds":
            for sample in family.samples:
                found[sample.labels["community"]] = sample.value
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary("prometheus"), binary("promtool")
    alertmanager_bin = binary("prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("e2e")
    processes = Processes(workdir)
    now = int(time.time())
    offline = threading.Event()
    router, _ = build_forums(now, offline)
    webhook = Webhook()
    hook_server = webhook.serve()
    forum = FakeForumServer(router).start()
    try:
        database = workdir / "store.db"
        config = workdir / "config.toml"
        service_config(config, forum_url=forum.base_url, database=database)

        am_port = free_port()
        am_config = workdir / "alertmanager.yml"
        alertmanager_config(
            am_config, webhook_url=f"http://127.0.0.1:{hook_server.server_address[1]}/alerts"
        )
        am_storage = workdir / "alertmanager"
        am_storage.mkdir()
        processes.start(
            "alertmanager",
            [
                alertmanager_bin,
                f"--config.file={am_config}",
                f"--storage.path={am_storage}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
        )

        service_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
        started = time.monotonic()
        processes.start(
            "service",
            serve_argv(config, service_port),
            cwd=workdir,
            env=env,
        )
        service_url = f"http://127.0.0.1:{service_port}"

        rules_dir = workdir / "rules"
        rules_dir.mkdir()
        # Every alert's `for:` at 1s; ForumSourceDown at 0s: its expression already
        # waits 3 poll intervals (6 s here).
        rules = write_test_sized_rules(rules_dir, default="1s", overrides={"ForumSourceDown": "0s"})
        prom_config = workdir / "prometheus.yml"
        prometheus_config(
            prom_config,
            rules=rules,
            alertmanager=f"127.0.0.1:{am_port}",
            target=f"127.0.0.1:{service_port}",
        )
        prometheus = start_prometheus(
            processes, "prometheus", config=prom_config, storage=workdir / "tsdb"
        )
        wait_for(
            f"alertmanager ready ({processes.log('alertmanager')})",
            lambda: httpx.get(f"http://127.0.0.1:{am_port}/-/ready", timeout=1).status_code == 200,
            timeout=30,
            every=0.2,
        )
        wait_for(
            f"the first successful poll of every community ({processes.log('service')})",
            lambda: {"declining", "steady", "offline"} <= set(last_success(service_url)),
            timeout=90,
        )
        offline.set()  # from now on the offline community's forum answers 503
        yield Stack(
            workdir=workdir,
            processes=processes,
            config=config,
            database=database,
            service_url=service_url,
            prometheus=prometheus,
            webhook=webhook,
            offline=offline,
            started=started,
            now=now,
        )
    finally:
        processes.stop_all()
        forum.stop()
        hook_server.shutdown()
        hook_server.server_close()
