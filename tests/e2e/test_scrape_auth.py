"""A real Prometheus scrapes the service over TLS with basic auth, with the scrape job the
README documents: up with the right password, down with a wrong one."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import bcrypt
import pytest
import yaml

from tests.certificates import write_certificate
from tests.e2e.conftest import Processes, Prometheus, binary, start_prometheus, wait_for
from tests.support import REPO_ROOT, free_port, serve_argv

pytestmark = pytest.mark.e2e

PASSWORD = "scrape-password-0123456789"


def documented_job() -> dict[str, Any]:
    """The forum-monitor job of the README's "Security" part, as written there."""
    readme = (REPO_ROOT / "README.md").read_text()
    security = readme[readme.index("## Security") :]
    block = re.search(r"```yaml\n(scrape_configs:\n.*?)```", security, flags=re.DOTALL)
    assert block, "the README shows the Prometheus job"
    (job,) = yaml.safe_load(block.group(1))["scrape_configs"]
    assert job["job_name"] == "forum-monitor"
    return dict(job)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("scrape-auth")
    binary("prometheus")
    write_certificate(workdir, "server")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (workdir / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    config = workdir / "config.toml"
    config.write_text(
        'pseudonym_key = "test-key-0123456789abcdef-0123456789"\n'
        f'database_url = "sqlite:///{workdir / "store.db"}"\n'
        f'[server]\nweb_config_file = "{workdir / "web.yml"}"\n'
    )
    (workdir / "right.password").write_text(PASSWORD + "\n")
    (workdir / "wrong.password").write_text("not-the-password\n")
    port = free_port()

    def job(name: str, password_file: str) -> dict[str, Any]:
        found = documented_job()
        found["job_name"] = name
        found["tls_config"]["ca_file"] = str(workdir / "server.crt")
        found["basic_auth"]["password_file"] = str(workdir / password_file)
        found["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        return found

    prometheus_yml = workdir / "prometheus.yml"
    prometheus_yml.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    job("forum-monitor", "right.password"),
                    job("forum-monitor-wrong-password", "wrong.password"),
                ],
            }
        )
    )
    processes = Processes(workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    try:
        processes.start("service", serve_argv(config, port), cwd=workdir, env=env)
        yield start_prometheus(
            processes, "prometheus", config=prometheus_yml, storage=workdir / "tsdb"
        )
    finally:
        processes.stop_all()


def up(prometheus: Prometheus, job: str) -> str | None:
    found = prometheus.query(f'up{{job="{job}"}}')
    return str(found[0]["value"][1]) if found else None


def test_prometheus_scrapes_with_the_documented_job(scraped: Prometheus) -> None:
    """up is 1 only for a 200 with a body Prometheus parses."""
    wait_for("the service scraped", lambda: up(scraped, "forum-monitor") == "1", timeout=60)

    def documented_job() -> dict[str, Any] | None:
        targets = scraped.api("targets")["activeTargets"]
        found = [t for t in targets if t["labels"]["job"] == "forum-monitor"]
        return found[0] if found and found[0]["health"] == "up" else None

    # the target's last scrape, read again if the last one ran past the 1 s scrape timeout
    # on a busy machine (up was 1 a moment ago, so the job and its credentials work)
    right = wait_for("the documented job's last scrape to be clean", documented_job, timeout=60)
    assert right["scrapeUrl"].startswith("https://") and right["lastError"] == ""


def test_a_wrong_password_leaves_the_target_down(scraped: Prometheus) -> None:
    wait_for("the service scraped", lambda: up(scraped, "forum-monitor") == "1", timeout=60)
    wait_for(
        "the wrong-password job scraped once",
        lambda: up(scraped, "forum-monitor-wrong-password") is not None,
        timeout=60,
    )
    assert up(scraped, "forum-monitor-wrong-password") == "0"
    targets = scraped.api("targets")["activeTargets"]
    wrong = [t for t in targets if t["labels"]["job"] == "forum-monitor-wrong-password"]
    assert "401" in wrong[0]["lastError"], wrong
