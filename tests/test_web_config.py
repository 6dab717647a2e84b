"""TLS and basic auth from a web config file in the Prometheus exporters' format: the service
as a user runs it, over https on 127.0.0.1 with a certificate made here."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest

from monitor.api import create_app
from monitor.config import settings_from_mapping
from monitor.service import Service
from monitor.web.auth import BasicAuthUsers
from tests.certificates import write_certificate
from tests.support import free_port, serve_argv, service_config, serving

USER, PASSWORD = "prometheus", "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: quick tests


@dataclass
class Served:
    base_url: str
    port: int
    certificate: Path
    process: subprocess.Popen[str]
    stderr: Path

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts the service's self-signed certificate."""
        return ssl.create_default_context(cafile=self.certificate)


def start_serve(tmp_path: Path, web_config: str) -> Served:
    (tmp_path / "web.yml").write_text(web_config)
    config = tmp_path / "config.toml"
    config.write_text(
        'pseudonym_key = "test-key-0123456789abcdef-0123456789"\n'
        f'database_url = "sqlite:///{tmp_path / "store.db"}"\n'
        '[server]\nheader_timeout = "1s"\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as log:
        process = subprocess.Popen(
            [*serve_argv(config, port), "--web.config.file", str(tmp_path / "web.yml")],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env=env,
        )
    return Served(f"https://127.0.0.1:{port}", port, tmp_path / "server.crt", process, stderr)


def wait_healthy(served: Served, **client: object) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert served.process.poll() is None, served.stderr.read_text()
        try:
            if httpx.get(served.base_url + "/healthz", timeout=2, **client).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "not healthy after 60 s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``serve`` with TLS and one basic-auth user."""
    tmp_path = tmp_path_factory.mktemp("tls")
    write_certificate(tmp_path, "server")
    service = start_serve(
        tmp_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  {USER}: {HASH}\n",
    )
    try:
        wait_healthy(service, verify=service.trust())
        yield service
    finally:
        service.process.terminate()
        service.process.wait(timeout=15)
    assert "Traceback" not in service.stderr.read_text()


@pytest.mark.parametrize(
    "auth",
    [None, (USER, "wrong"), ("someone", PASSWORD), (USER, PASSWORD + "x" * 80)],
    ids=["none", "wrong password", "unknown user", "too long"],
)
@pytest.mark.parametrize("path", ["/metrics", "/", "/api/v1/communities", "/openapi.json"])
def test_without_the_right_credentials_is_401_asking_for_basic(
    served: Served, path: str, auth: tuple[str, str] | None
) -> None:
    with httpx.Client(verify=served.trust(), auth=auth) as client:
        response = client.get(served.base_url + path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "authentication" in response.json()["detail"]
        head = client.head(served.base_url + path)
        assert head.status_code == 401 and head.content == b""


def test_the_right_credentials_over_https_get_every_page(served: Served) -> None:
    with httpx.Client(verify=served.trust(), auth=(USER, PASSWORD)) as client:
        for path in ("/metrics", "/", "/docs", "/api/v1/communities", "/openapi.json"):
            assert client.get(served.base_url + path).status_code == 200, path
        assert "forum_monitor_polls" in client.get(served.base_url + "/metrics").text


def test_the_probes_stay_open(served: Served) -> None:
    with httpx.Client(verify=served.trust()) as client:
        assert client.get(served.base_url + "/healthz").status_code == 200
        assert client.get(served.base_url + "/readyz").status_code == 200


def test_plain_http_on_the_tls_port_gets_nothing(served: Served) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=5)
    # and the service is none the worse for it
    assert httpx.get(served.base_url + "/healthz", verify=served.trust()).status_code == 200


def test_a_connection_that_never_starts_its_handshake_is_closed(served: Served) -> None:
    silent = socket.create_connection(("127.0.0.1", served.port))
    silent.settimeout(60)  # the header timeout is 1 s; this only ends a hung test
    try:
        assert silent.recv(1024) == b""
    finally:
        silent.close()


def test_client_certificates_when_required(tmp_path: Path) -> None:
    authority = write_certificate(tmp_path, "clients-ca", authority=True)
    write_certificate(tmp_path, "client", issuer=authority)
    write_certificate(tmp_path, "server")
    service = start_serve(
        tmp_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n"
        "  min_version: TLS13\n",
    )
    try:
        with_cert = ssl.create_default_context(cafile=tmp_path / "server.crt")
        with_cert.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
        wait_healthy(service, verify=with_cert)
        without = ssl.create_default_context(cafile=tmp_path / "server.crt")
        with pytest.raises(httpx.HTTPError):
            httpx.get(service.base_url + "/healthz", verify=without, timeout=5)
        old = ssl.create_default_context(cafile=tmp_path / "server.crt")
        old.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.HTTPError):
            httpx.get(service.base_url + "/healthz", verify=old, timeout=5)
    finally:
        service.process.terminate()
        service.process.wait(timeout=15)


def test_every_route_but_the_probes_needs_a_user_on_plain_http_too(tmp_path: Path) -> None:
    service = Service(settings_from_mapping(service_config(tmp_path, [])))
    users = BasicAuthUsers({USER: HASH.encode()})
    with serving(create_app(service, schedule=False, users=users)) as base_url:
        for path in ("/", "/docs", "/metrics", "/openapi.json", "/api/v1/communities", "/x"):
            assert httpx.get(base_url + path).status_code == 401, path
            assert httpx.get(base_url + path, auth=(USER, PASSWORD)).status_code in (200, 404)
        assert httpx.get(base_url + "/healthz").status_code == 200
        assert httpx.get(base_url + "/readyz").status_code == 503  # not scheduled here


BAD_WEB_CONFIGS = [
    (
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
        ["tls_server_config.cert_file", "tls_server_config.key_file"],
    ),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAnyClientCert\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        ["tls_server_config.client_auth_type", "tls_server_config.cipher_suites"],
    ),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n"
        "  max_version: TLS12\n",
        ["tls_server_config.client_ca_file", "tls_server_config.min_version"],
    ),
    (
        "basic_auth_users:\n  alice: plaintext\n  bob: $2y$10$short\n",
        ["basic_auth_users.alice", "basic_auth_users.bob"],
    ),
    (
        "rate_limit:\n  interval: 1s\ntls_server_config: {}\n",
        ["rate_limit", "tls_server_config.cert_file", "tls_server_config.key_file"],
    ),
    ("basic_auth_users: [alice]\nunknown_key: 1\n", ["basic_auth_users", "unknown_key"]),
    ("tls_server_config: [\n", ["invalid YAML"]),
]


@pytest.mark.parametrize(("text", "fields"), BAD_WEB_CONFIGS)
def test_a_bad_web_config_is_exit_2_with_one_line_per_problem(
    tmp_path: Path, text: str, fields: list[str]
) -> None:
    write_certificate(tmp_path, "server")
    web = tmp_path / "web.yml"
    web.write_text(text)
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\nweb_config_file = "{web}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    for argv in (
        [*serve_argv(config, free_port()), "--web.config.file", str(web)],
        [sys.executable, "-m", "monitor", "check-config", str(config)],
    ):
        run = subprocess.run(
            argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
        )
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == len(fields), lines
        for line, field in zip(sorted(lines), sorted(fields), strict=True):
            assert line.startswith(f"{web}: ") and field in line, line
        assert "Traceback" not in run.stderr
