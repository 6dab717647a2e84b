"""deploy/compose/ without Docker: valid against the Compose specification's JSON schema,
every mounted file present, secrets only from .env, and each mounted config checked by
its own tool as the container will see it."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deploy.test_container import DOCKERFILE, stages
from tests.deploy.tools import find_tool, run
from tests.support import REPO_ROOT

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
COMPOSE_SCHEMA = REPO_ROOT / "deploy" / "schemas" / "compose-spec" / "compose-spec.json"
SERVICES = {"forum-monitor", "postgres", "prometheus", "alertmanager", "grafana"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; $$ is a $
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>\w+)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<plain>\w+))")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """The Compose file as Compose reads it with ``env`` (its .env) set."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match["braced"] or match["plain"]
        value, op, arg = env.get(name), match["op"] or "", match["arg"] or ""
        empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and empty:
            raise KeyError(f"{name}: {arg}")
        if op.endswith("-") and empty:
            return arg
        if op.endswith("+"):
            return "" if empty else arg
        return value or ""

    return _VARIABLE.sub(replace, text)


def variables(text: str) -> dict[str, str]:
    """Each variable the file uses, with how (``:?`` required, ``:-`` defaulted, ...)."""
    return {
        match["braced"] or match["plain"]: match["op"] or ""
        for match in _VARIABLE.finditer(text)
        if match[0] != "$$"
    }


def example_env() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def filled_env() -> dict[str, str]:
    """.env.example with each variable filled as it tells the operator to."""
    return {
        name: f"{index:02d}" + "0123456789abcdef" * 4 for index, name in enumerate(example_env())
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), filled_env()))
    return data


def bind_mounts(service: Mapping[str, Any]) -> list[tuple[Path, str, bool]]:
    """(host path, container path, read only) of a service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume["type"] != "bind":
                continue
            source, target = volume["source"], volume["target"]
            read_only = bool(volume.get("read_only"))
        else:
            source, target, *options = volume.split(":")
            if not source.startswith((".", "/")):
                continue  # a named volume
            read_only = "ro" in ",".join(options).split(",")
        mounts.append(((COMPOSE_DIR / source).resolve(), target, read_only))
    return mounts


def container_view(service: Mapping[str, Any], root: Path) -> Path:
    """``root`` laid out with the service's bind mounts where its container sees them."""
    for source, target, _ in bind_mounts(service):
        destination = root / PurePosixPath(target).relative_to("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copyfile(source, destination)
    return root


# ---------------------------------------------------------------- the file itself


def test_valid_against_the_compose_specification_schema() -> None:
    checker = find_tool("check-jsonschema", install="pip install check-jsonschema: the dev extra")
    result = run(checker, "--schemafile", COMPOSE_SCHEMA, COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    """The same check on a copy with one typo and one wrong type fails, naming both."""
    checker = find_tool("check-jsonschema", install="pip install check-jsonschema: the dev extra")
    text = COMPOSE_FILE.read_text()
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        text.replace("    stop_grace_period: 30s", "    stop_grace_priod: 30s", 1).replace(
            "      retries: 5", "      retries: [5]", 1
        )
    )
    assert broken.read_text() != text
    result = run(checker, "--schemafile", COMPOSE_SCHEMA, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stop_grace_priod" in result.stdout and "retries" in result.stdout


def test_runs_the_five_services_from_the_repository_dockerfile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    build = services["forum-monitor"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == REPO_ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert services["forum-monitor"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    mounts = 0
    for name, service in compose["services"].items():
        for source, _target, read_only in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert read_only, f"{name} mounts {source} writable"
            mounts += 1
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in named, f"{name}: undeclared volume {volume}"
    assert mounts >= 7


def test_mounts_the_repository_files_rather_than_copies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    sources = {source for service in services.values() for source, _, _ in bind_mounts(service)}
    for shared in (
        REPO_ROOT / "deploy" / "prometheus" / "rules",
        REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml",
        REPO_ROOT / "grafana" / "dashboards",
        REPO_ROOT / "grafana" / "provisioning" / "dashboards" / "forum-monitor.yml",
    ):
        assert shared in sources, shared
    # no copy of the rules, the Alertmanager config or a dashboard sits in deploy/compose
    own = {path.name for path in COMPOSE_DIR.rglob("*") if path.is_file()}
    assert not own & {"forum-monitor.yml", "alertmanager.yml", "overview.json"}, own


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


# ---------------------------------------------------------------- secrets


def test_secrets_come_from_env_and_the_example_holds_none() -> None:
    text = COMPOSE_FILE.read_text()
    used = variables(text)
    example = example_env()
    assert used.keys() == example.keys(), (used, example)
    for name, op in used.items():
        assert op == ":?", f"{name} must be required (${{{name}:?...}}), not {op!r}"
        assert example[name] == "", f".env.example gives {name} a value"
    assert {"POSTGRES_PASSWORD", "FORUM_MONITOR_PSEUDONYM_KEY"} <= used.keys()
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(text, example)  # as shipped, Compose refuses to start


def test_no_secret_is_written_into_the_file(compose: dict[str, Any]) -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|KEY|SECRET|DATABASE_URL", key):
                assert "${" in str(value), f"{name}: {key} is written into compose.yaml"


def test_env_and_secrets_stay_out_of_git_and_the_image() -> None:
    assert "/deploy/compose/.env" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    from tests.deploy.test_container import dockerignore_excludes, dockerignore_rules

    assert dockerignore_excludes("deploy/compose/.env", dockerignore_rules())


# ---------------------------------------------------------------- each service's config


def test_forum_monitor_config_passes_check_config(compose: dict[str, Any], tmp_path: Path) -> None:
    service = compose["services"]["forum-monitor"]
    (final,) = stages(DOCKERFILE.read_text())[-1:]
    image_env = final.env()
    root = container_view(service, tmp_path)
    config = root / PurePosixPath(image_env["FORUM_MONITOR_CONFIG"]).relative_to("/")
    assert config.is_file(), "the mount does not put a config where the image reads it"
    env = {
        **{name: value for name, value in os.environ.items() if "FORUM_MONITOR_" not in name},
        **service["environment"],
        "FORUM_MONITOR_DATA_DIR": str(tmp_path / "data"),
    }
    result = run(sys.executable, "-m", "monitor", "check-config", config, env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert service["environment"]["FORUM_MONITOR_DATABASE_URL"].startswith(
        "postgresql://forum_monitor:"
    )
    assert "@postgres:5432/forum_monitor" in service["environment"]["FORUM_MONITOR_DATABASE_URL"]


def test_prometheus_config_loads_the_rules_as_mounted(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    promtool = find_tool("promtool", install="Debian: prometheus")
    service = compose["services"]["prometheus"]
    config_flag = next(arg for arg in service["command"] if arg.startswith("--config.file="))
    config_path = PurePosixPath(config_flag.partition("=")[2])
    root = container_view(service, tmp_path)
    result = run(promtool, "check", "config", root / config_path.relative_to("/"))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = len(list((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")))
    assert f"{rules} rule files found" in result.stdout + result.stderr


def test_prometheus_scrapes_and_alerts_by_service_name(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (final,) = stages(DOCKERFILE.read_text())[-1:]
    port = final.env()["FORUM_MONITOR_LISTEN"].rpartition(":")[2]
    assert jobs["forum-monitor"]["static_configs"][0]["targets"] == [f"forum-monitor:{port}"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert {"forum-monitor", "alertmanager"} <= set(compose["services"])
    # the same job, globals and rules as the repository's config: only targets differ
    shared = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["global"] == shared["global"]
    assert config["rule_files"] == shared["rule_files"]
    assert jobs.keys() == {job["job_name"] for job in shared["scrape_configs"]}


def test_alertmanager_config_as_mounted_is_valid(compose: dict[str, Any], tmp_path: Path) -> None:
    amtool = find_tool("amtool", install="Debian: prometheus-alertmanager")
    service = compose["services"]["alertmanager"]
    config_flag = next(arg for arg in service["command"] if arg.startswith("--config.file="))
    root = container_view(service, tmp_path)
    mounted = root / PurePosixPath(config_flag.partition("=")[2]).relative_to("/")
    result = run(amtool, "check-config", mounted)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_gets_the_datasource_the_dashboards_start_on(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    root = container_view(compose["services"]["grafana"], tmp_path)
    provisioning = root / "etc" / "grafana" / "provisioning"
    (datasource_file,) = (provisioning / "datasources").glob("*.yml")
    (datasource,) = yaml.safe_load(datasource_file.read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    shared = yaml.safe_load(
        (REPO_ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    for key in ("name", "uid", "type", "access", "jsonData"):
        assert datasource[key] == shared[key], key
    (provider_file,) = (provisioning / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    dashboards = root / PurePosixPath(provider["options"]["path"]).relative_to("/")
    boards = sorted(dashboards.glob("*.json"))
    assert [path.name for path in boards] == sorted(
        path.name for path in (REPO_ROOT / "grafana" / "dashboards").glob("*.json")
    )
    for path in boards:
        variable = yaml.safe_load(path.read_text())["templating"]["list"][0]
        assert variable["current"]["value"] == datasource["uid"], path.name
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (root / PurePosixPath(home).relative_to("/")).is_file()
