"""The web config file: TLS and basic-auth users for ``serve``, as Prometheus exporters read it.

The format is the one of the Prometheus exporter-toolkit (``--web.config.file``),
so one file and one ``scrape_config`` serve every exporter of a host::

    tls_server_config:
      cert_file: server.crt          # relative paths: from the file's own directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: clients.crt
      min_version: TLS12             # TLS10 .. TLS13; max_version too
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\\n')

What the toolkit offers and forum-monitor does not (inline PEM, cipher and curve
lists, SAN checks, the HTTP/2 and header settings, rate limits) is refused by
name rather than ignored. The file is read once, when ``serve`` starts.
Validation collects every problem into one ``ConfigError``, one line each:
``<file>: <field>: <problem>``.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from monitor.config import validation_problems
from monitor.errors import ConfigError

T = TypeVar("T")
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED = {
    ("tls_server_config", "cert"): "inline PEM is not supported; give cert_file",
    ("tls_server_config", "key"): "inline PEM is not supported; give key_file",
    ("tls_server_config", "client_ca"): "inline PEM is not supported; give client_ca_file",
    ("tls_server_config", "client_allowed_sans"): "not supported by forum-monitor",
    ("tls_server_config", "cipher_suites"): "not supported; OpenSSL's defaults apply",
    ("tls_server_config", "curve_preferences"): "not supported; OpenSSL's defaults apply",
    ("tls_server_config", "prefer_server_cipher_suites"): "not supported by forum-monitor",
    ("http_server_config",): "not supported (HTTP/1.1 only; the security headers are fixed)",
    ("rate_limit",): "not supported by forum-monitor",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Section):
    cert_file: str
    key_file: str
    client_auth_type: Literal[
        "NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"
    ] = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"


KNOWN = ("tls_server_config", "basic_auth_users")


@dataclass(frozen=True)
class WebConfig:
    """What ``serve`` needs from the file: a TLS context, the users and their hashes."""

    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)


def load_web_config(path: Path) -> WebConfig:
    """Read and check ``path``; ``ConfigError`` with one line per problem."""

    def problem(where: str, what: str) -> str:
        return f"{path}: {where}: {what}"

    raw = _read_yaml(path)
    problems = [problem(".".join(keys), why) for keys, why in _unsupported(raw)]
    problems += [
        problem(str(key), "unknown key (check the spelling)") for key in raw if key not in KNOWN
    ]
    tls_section = _validated(
        TypeAdapter(TlsServerConfig | None), raw.get("tls_server_config"), "tls_server_config"
    )
    users_section = _validated(
        TypeAdapter(dict[str, str]), raw.get("basic_auth_users") or {}, "basic_auth_users"
    )
    for parsed in (tls_section, users_section):
        if isinstance(parsed, Problems):
            problems += [f"{path}: {line}" for line in parsed.lines]
    users: dict[str, bytes] = {}
    if isinstance(users_section, dict):
        for user, hashed in users_section.items():
            if not user or ":" in user:
                problems.append(
                    problem(f"basic_auth_users.{user}", "a user name is not empty and has no ':'")
                )
            elif not BCRYPT_HASH.fullmatch(hashed):
                problems.append(
                    problem(
                        f"basic_auth_users.{user}",
                        "not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')",
                    )
                )
            else:
                users[user] = hashed.encode("ascii")
    tls = None
    if isinstance(tls_section, TlsServerConfig):
        tls, tls_problems = _tls_context(tls_section, base=path.parent)
        problems += [problem(f"tls_server_config.{key}", why) for key, why in tls_problems]
    if problems:
        raise ConfigError(problems)
    return WebConfig(tls=tls, users=users)


@dataclass(frozen=True)
class Problems:
    lines: list[str]


def _validated(adapter: TypeAdapter[T], data: object, name: str) -> T | Problems:
    """``data`` validated, or its problems with each field path under ``name``."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        lines = validation_problems(exc)
    return Problems(
        [
            name + line.removeprefix("(top level)")
            if line.startswith("(top level):")
            else f"{name}.{line}"
            for line in lines
        ]
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: web config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the web config file: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError([f"{path}: invalid YAML{line}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping (tls_server_config, basic_auth_users)"])
    return data


def _unsupported(raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Keys of the toolkit's format that forum-monitor refuses; removed from ``raw``."""
    found = []
    for keys, why in UNSUPPORTED.items():
        parent: Any = raw
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and keys[-1] in parent:
            del parent[keys[-1]]
            found.append((keys, why))
    return found


def _tls_context(
    config: TlsServerConfig, *, base: Path
) -> tuple[ssl.SSLContext | None, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    low, high = TLS_VERSIONS[config.min_version], TLS_VERSIONS[config.max_version]
    if low > high:
        problems.append(("min_version", f"{config.min_version} is above max_version"))
    else:
        context.minimum_version, context.maximum_version = low, high
    cert, key = base / config.cert_file, base / config.key_file
    for name, file in (("cert_file", cert), ("key_file", key)):
        if not file.is_file():
            problems.append((name, f"{file}: no such file"))
    if not problems:
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            problems.append(
                (
                    "cert_file",
                    f"cannot load {cert} with {key}: {_ssl_reason(exc)}; give a PEM "
                    "certificate and its private key",
                )
            )
    context.verify_mode = CLIENT_AUTH[config.client_auth_type]
    if config.client_ca_file is not None:
        authority = base / config.client_ca_file
        try:
            context.load_verify_locations(cafile=authority)
        except (ssl.SSLError, OSError) as exc:
            problems.append(("client_ca_file", f"cannot load {authority}: {_ssl_reason(exc)}"))
    elif context.verify_mode != ssl.CERT_NONE:
        problems.append(("client_ca_file", f"required with {config.client_auth_type}"))
    return (None if problems else context), problems


def _ssl_reason(exc: ssl.SSLError | OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason).lower().replace("_", " ") if exc.reason else "not valid PEM"
    return (exc.strerror or str(exc)).lower()
