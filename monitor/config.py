"""One validated Settings object, from a TOML file plus ``FORUM_MONITOR_*`` environment.

This is the only module that reads ``os.environ``; everything else receives a
``Settings``. Validation errors are collected into a ``ConfigError`` holding one
line per problem, each naming the field path (``communities[2].subreddit: ...``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
)

from monitor.errors import ConfigError
from monitor.untrusted import without_userinfo

ENV_PREFIX = "FORUM_MONITOR_"
DEFAULT_LISTEN = "127.0.0.1:9808"
DEFAULT_DATA_DIR = "var"
MIN_PSEUDONYM_KEY_BYTES = 32
"""A shorter key could be guessed; 32 bytes is what ``secrets.token_hex(16)`` gives."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds in a duration such as ``"5m"``, ``"1h30m"``, ``"90s"`` or a plain number."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "5m", got a boolean')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise ValueError('expected a duration such as "5m", got an empty string')
        position, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if text[position : match.start()].strip():
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            position = match.end()
        if position == 0 or text[position:].strip():
            raise ValueError(
                f'{value!r} is not a duration; use a number with a unit s, m, h or d, e.g. "5m"'
            )
    else:
        raise ValueError(f'expected a duration such as "5m", got {type(value).__name__}')
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, Field(description='seconds; accepts "30s", "5m", "1h"')]


def _check_http_url(value: str) -> str:
    shown = without_userinfo(value)  # never echo a password back
    if shown != value:
        raise ValueError(
            f"{shown!r} must not carry credentials (user:password@): they would be sent "
            "and stored with every link; a forum's API key has its own setting"
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{shown!r} is not an http(s) URL")
    return value.rstrip("/")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _group_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(
            f"group name {name!r} must be lower-case letters, digits and _ "
            "(it becomes a label value)"
        )
    return name


def _phrases(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of phrases")
    if not all(isinstance(p, str) and p.strip() for p in value):
        raise ValueError("must hold only non-empty strings")
    return value


GroupName = Annotated[str, AfterValidator(_group_name)]
Phrases = Annotated[list[str], BeforeValidator(_phrases)]


class KeywordGroups(RootModel[dict[GroupName, Phrases]]):
    """Keyword groups: group name -> phrases matched case-insensitively on word boundaries.

    Each group is validated on its own, so every invalid group is reported, each named.
    """

    model_config = ConfigDict(frozen=True)
    root: dict[GroupName, Phrases] = Field(default_factory=dict)

    def groups(self) -> dict[str, tuple[str, ...]]:
        return {name: tuple(phrases) for name, phrases in self.root.items()}


class CommunityBase(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    interval: Duration = 300.0
    history_days: int = Field(default=30, ge=0, le=3650)
    base_url: str | None = None
    keywords: KeywordGroups | None = None
    enabled: bool = True

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> float:
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError("must be at least 1s")
        return seconds

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    def url_root(self, default: str) -> str:
        """The API root: ``base_url`` when set (tests, mirrors), else the source's default."""
        return self.base_url or default


class RedditCommunity(CommunityBase):
    source: Literal["reddit"]
    subreddit: str = Field(pattern=r"^[A-Za-z0-9_]{2,21}$")


class DiscourseCommunity(CommunityBase):
    source: Literal["discourse"]
    base_url: str  # required: a Discourse forum has no default host
    category: str | None = None
    api_username: str | None = None


class HackerNewsCommunity(CommunityBase):
    source: Literal["hackernews"]
    query: str | None = Field(
        default=None,
        description="keyword scope via the Algolia search API; omit to watch the whole site",
    )
    search_base_url: str | None = None

    @field_validator("search_base_url")
    @classmethod
    def _search_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)


class FeedCommunity(CommunityBase):
    source: Literal["rss"]
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)


class MastodonCommunity(CommunityBase):
    source: Literal["mastodon"]
    base_url: str  # required: the instance whose timeline is read
    hashtag: str = Field(description="without the leading #")
    local: bool = Field(default=False, description="only the instance's own statuses")

    @field_validator("hashtag")
    @classmethod
    def _hashtag(cls, value: str) -> str:
        if value.startswith("#"):
            raise ValueError("give the hashtag without its leading #")
        if re.fullmatch(r"\w{1,100}", value) is None:
            raise ValueError("letters, digits and _ only, at most 100")
        return value


_GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")


class GitHubCommunity(CommunityBase):
    source: Literal["github"]
    repository: str = Field(description="owner/name, e.g. PyGithub/PyGithub")
    category: str | None = Field(
        default=None, description="a discussion category's name or slug; omit for all"
    )

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        name = value.partition("/")[2]
        if _GITHUB_REPOSITORY.fullmatch(value) is None or name in (".", ".."):
            raise ValueError(
                f"{value!r} is not owner/name (a GitHub account, '/', a repository name: "
                "letters, digits, '-', '_', '.'), e.g. PyGithub/PyGithub"
            )
        return value


STACKEXCHANGE_TAG = re.compile(r"[a-z0-9#+.-]{1,35}")
"""A Stack Exchange tag: lower case letters, digits and ``#+.-``, at most 35 characters."""
STACKEXCHANGE_MAX_TAGS = 5
"""The API ANDs ``tagged``; with more than 5 tags it answers nothing at all."""


def _tag_list(value: object) -> object:
    """``tagged`` as a list: a single tag may be written as a string."""
    return [value] if isinstance(value, str) else value


class StackExchangeCommunity(CommunityBase):
    source: Literal["stackexchange"]
    site: str = Field(description="the site's API name: stackoverflow, superuser, math, ...")
    tagged: Annotated[list[str] | None, BeforeValidator(_tag_list)] = Field(
        default=None,
        description="questions carrying all of these tags, with their answers and comments",
    )

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        if re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,99}", value) is None:
            raise ValueError(
                "the site's API name in lower case (stackoverflow, superuser, math, "
                "meta.stackexchange, ...), as https://api.stackexchange.com/docs/sites lists it"
            )
        return value

    @field_validator("tagged")
    @classmethod
    def _tagged(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags = [tag.strip().lower() for tag in value]
        if not tags or len(tags) > STACKEXCHANGE_MAX_TAGS:
            raise ValueError(
                f"give 1 to {STACKEXCHANGE_MAX_TAGS} tags (a question must carry all of them)"
            )
        for tag in tags:
            if STACKEXCHANGE_TAG.fullmatch(tag) is None:
                raise ValueError(f"{tag!r} is not a tag (letters, digits, #+.- and 35 at most)")
        return tags


class LemmyCommunity(CommunityBase):
    source: Literal["lemmy"]
    base_url: str  # required: the instance whose API is read
    community: str = Field(
        description='"name" for a community of the instance, "name@host" for a federated one'
    )

    @field_validator("community")
    @classmethod
    def _community(cls, value: str) -> str:
        if value.startswith("!"):
            raise ValueError(f"{value!r}: give the community without Lemmy's leading !")
        name, at, host = value.partition("@")
        if re.fullmatch(r"[A-Za-z0-9_]{1,100}", name) is None:
            raise ValueError(
                f"{value!r}: the community's name (letters, digits and _), then optionally "
                '"@" and its instance\'s host, e.g. "technology@lemmy.world"'
            )
        if at and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?", host) is None:
            raise ValueError(f"{value!r}: {host!r} after the @ is not a host name")
        return value


Community = Annotated[
    RedditCommunity
    | DiscourseCommunity
    | HackerNewsCommunity
    | FeedCommunity
    | MastodonCommunity
    | GitHubCommunity
    | StackExchangeCommunity
    | LemmyCommunity,
    Field(discriminator="source"),
]
SOURCE_KINDS = (
    "reddit",
    "discourse",
    "hackernews",
    "rss",
    "mastodon",
    "github",
    "stackexchange",
    "lemmy",
)


class RedditSettings(_Strict):
    user_agent: str | None = Field(
        default=None,
        description="Reddit's required form: <platform>:<app id>:<version> (by /u/<user>)",
    )
    client_id: str | None = None
    client_secret: str | None = None

    @field_validator("user_agent")
    @classmethod
    def _ua(cls, value: str | None) -> str | None:
        form = r"[^:\s]+:[^:\s]+:[^:\s]+ \(by /u/[\w-]+\)"
        if value is not None and not re.fullmatch(form, value):
            raise ValueError(
                "must have Reddit's form '<platform>:<app id>:<version> (by /u/<user>)'"
            )
        return value


class DiscourseSettings(_Strict):
    api_key: str | None = None


class GitHubSettings(_Strict):
    token: str | None = Field(
        default=None,
        repr=False,
        description="a personal access token: GitHub's GraphQL API answers nothing without one",
    )


STACKEXCHANGE_QUOTA = {False: 300, True: 10_000}
"""Requests a day the Stack Exchange API allows one IP without and with an app key."""
STACKEXCHANGE_IDLE_REQUESTS = 3
"""Requests of a poll that finds nothing new (questions, answers, comments)."""


class StackExchangeSettings(_Strict):
    key: str | None = Field(
        default=None,
        description="an app key (stackapps.com): 10,000 requests a day instead of 300; "
        "not a secret, by Stack Exchange's own word: it travels in the query string",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("an app key is one word, as stackapps.com shows it")
        return value


class HttpSettings(_Strict):
    """The HTTP policy's knobs; the defaults are polite for public sites."""

    connect_timeout: Duration = 10.0
    read_timeout: Duration = 30.0
    total_timeout: Duration = 60.0
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_retries: int = Field(default=3, ge=0, le=10)
    backoff_base: Duration = 1.0
    max_retry_wait: Duration = 60.0
    poll_deadline: Duration = Field(
        default=300.0,
        description="a poll stops asking for more pages after this long and commits what it "
        "has (its coverage says so); the next poll goes on",
    )
    rate_per_minute: dict[str, float] = Field(
        default_factory=dict,
        description="per-host request rate overriding the source kind's default",
    )

    @field_validator(
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "backoff_base",
        "max_retry_wait",
        "poll_deadline",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: object) -> float:
        return parse_duration(value)

    @field_validator("rate_per_minute")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for host, rate in value.items():
            if rate <= 0:
                raise ValueError(f"rate for {host!r} must be greater than zero")
        return value


class ServerSettings(_Strict):
    """How ``serve`` treats its own clients (see ``monitor.connections``)."""

    max_connections: int = Field(
        default=256, ge=1, le=65536, description="open connections at most; more close idle ones"
    )
    header_timeout: Duration = Field(
        default=10.0,
        description="time a connection has to send a complete request head (TLS handshake "
        "included), after it opens or after its previous response",
    )
    web_config_file: str | None = Field(
        default=None,
        description="TLS and basic auth, in the Prometheus exporters' web config format",
    )

    @field_validator("header_timeout", mode="before")
    @classmethod
    def _header_timeout(cls, value: object) -> float:
        seconds = parse_duration(value)
        if seconds > 600:
            raise ValueError("must be at most 10m")
        return seconds


class Settings(_Strict):
    database_url: str | None = None
    listen: str = DEFAULT_LISTEN
    data_dir: str = DEFAULT_DATA_DIR
    contact: str = Field(
        default="https://github.com/forum-monitor/forum-monitor",
        description="URL or e-mail put in the User-Agent so site operators can reach you "
        "(the default, the project's URL, reaches the project, not you)",
    )
    pseudonym_key: str | None = Field(default=None, repr=False)
    store_bodies: bool = False
    retention_days: int = Field(default=30, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_concurrent_polls: int = Field(default=4, ge=1, le=64)
    keywords: KeywordGroups = Field(default_factory=KeywordGroups)
    http: HttpSettings = Field(default_factory=HttpSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    reddit: RedditSettings = Field(default_factory=RedditSettings)
    discourse: DiscourseSettings = Field(default_factory=DiscourseSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    stackexchange: StackExchangeSettings = Field(default_factory=StackExchangeSettings)
    communities: list[Community] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("pseudonym_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip().encode("utf-8")) < MIN_PSEUDONYM_KEY_BYTES:
            # the value itself is a secret: say how short it is, never what it is
            raise ValueError(
                f"must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes, this one has "
                f"{len(value.strip().encode('utf-8'))}; make one with "
                "`python3 -c 'import secrets; print(secrets.token_hex(32))'` (a new key "
                "counts every author anew: start once with --accept-new-key)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        authority = (value or "").partition("://")[2].partition("/")[0]
        if authority.count("@") > 1:
            # read as is, the password's tail would be taken for the host and shown in errors
            raise ValueError("the password holds an unescaped '@': write it as %40")
        return value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'forum-monitor.db'}"

    def keyword_groups_for(self, community: CommunityBase) -> dict[str, tuple[str, ...]]:
        groups = self.keywords.groups()
        if community.keywords is not None:
            groups.update(community.keywords.groups())
        return groups


def config_warnings(settings: Settings) -> list[str]:
    """Valid but unwise settings, one line each naming the fields (``check-config``)."""
    warnings: list[str] = []
    polls_reddit = any(isinstance(c, RedditCommunity) and c.enabled for c in settings.communities)
    # model_fields_set: set in the file or by FORUM_MONITOR_CONTACT, not the default
    contact_set = "contact" in settings.model_fields_set
    if polls_reddit and settings.reddit.user_agent is None and not contact_set:
        warnings.append(
            "reddit.user_agent: not set and no contact configured; Reddit's User-Agent then "
            "names only the project's URL, which reaches no one running this monitor. Set "
            "contact (your URL or e-mail) or [reddit] user_agent (with your Reddit username)"
        )
    return warnings + _stackexchange_quota_warnings(settings)


def _stackexchange_quota_warnings(settings: Settings) -> list[str]:
    """A warning when idle polls alone would spend the API's daily quota for one IP."""
    polled = [
        c for c in settings.communities if isinstance(c, StackExchangeCommunity) and c.enabled
    ]
    per_day = sum(STACKEXCHANGE_IDLE_REQUESTS * 86400 / c.interval for c in polled)
    keyed = settings.stackexchange.key is not None
    quota = STACKEXCHANGE_QUOTA[keyed]
    if per_day <= quota:
        return []
    advice = (
        "poll less often"
        if keyed
        else "set [stackexchange] key (an app key from stackapps.com: 10,000 a day) or poll "
        "less often"
    )
    communities = "1 community" if len(polled) == 1 else f"{len(polled)} communities"
    return [
        f"stackexchange.key: polling {communities} of Stack Exchange as configured asks at "
        f"least {per_day:.0f} requests a day ({STACKEXCHANGE_IDLE_REQUESTS} a poll when "
        f"nothing is new), over the {quota} a day the API allows one IP "
        f"{'with' if keyed else 'without'} a key; {advice}"
    ]


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


# Environment variables that override top-level settings (name -> field).
_ENV_FIELDS = {
    "DATABASE_URL": "database_url",
    "LISTEN": "listen",
    "DATA_DIR": "data_dir",
    "PSEUDONYM_KEY": "pseudonym_key",
    "STORE_BODIES": "store_bodies",
    "LOG_LEVEL": "log_level",
    "CONTACT": "contact",
}
_ENV_NESTED = {
    "REDDIT_CLIENT_ID": ("reddit", "client_id"),
    "REDDIT_CLIENT_SECRET": ("reddit", "client_secret"),
    "REDDIT_USER_AGENT": ("reddit", "user_agent"),
    "DISCOURSE_API_KEY": ("discourse", "api_key"),
    "GITHUB_TOKEN": ("github", "token"),
    "STACKEXCHANGE_KEY": ("stackexchange", "key"),
    "WEB_CONFIG_FILE": ("server", "web_config_file"),
}


def _format_location(location: tuple[int | str, ...]) -> str:
    path = ""
    skip_next_tag = False
    for index, part in enumerate(location):
        if isinstance(part, int):
            path += f"[{part}]"
            # a discriminated union adds the tag (e.g. "reddit") after the index
            skip_next_tag = location[:index] == ("communities",)
            continue
        if part == "[key]":  # pydantic's marker for a dict key; the key itself is named
            continue
        if skip_next_tag and part in SOURCE_KINDS:
            skip_next_tag = False
            continue
        skip_next_tag = False
        path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind == "missing":
        return "field required"
    if kind == "union_tag_invalid":
        return f"unknown source kind; expected one of {', '.join(SOURCE_KINDS)}"
    if kind == "union_tag_not_found":
        return "field required (the source kind)"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        location = tuple(error["loc"])
        if error["type"] == "union_tag_invalid" or error["type"] == "union_tag_not_found":
            location = (*location, "source")
        problems.append(f"{_format_location(location)}: {_describe(error)}")
    return problems


def _duplicate_ids(data: Mapping[str, Any]) -> list[str]:
    communities = data.get("communities")
    if not isinstance(communities, list):
        return []
    problems: list[str] = []
    first_index: dict[str, int] = {}
    for index, community in enumerate(communities):
        ident = community.get("id") if isinstance(community, dict) else None
        if not isinstance(ident, str):
            continue
        if ident in first_index:
            problems.append(
                f"communities[{index}].id: duplicate id {ident!r} "
                f"(first used by communities[{first_index[ident]}])"
            )
        else:
            first_index[ident] = index
    return problems


def _missing_github_token(settings: Settings) -> list[str]:
    """GitHub's GraphQL API refuses every request without a token: say so before polling."""
    if (settings.github.token or "").strip():
        return []
    wanting = [
        f"communities[{index}] ({community.id!r})"
        for index, community in enumerate(settings.communities)
        if isinstance(community, GitHubCommunity) and community.enabled
    ]
    if not wanting:
        return []
    return [
        f"github.token: field required: {', '.join(wanting)} read GitHub Discussions, whose "
        "GraphQL API answers nothing without a token; set [github] token or "
        f"{ENV_PREFIX}GITHUB_TOKEN (a personal access token that can read the repository)"
    ]


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    problems = _duplicate_ids(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc) + problems) from None
    problems += _missing_github_token(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(data)
    for suffix, field in _ENV_FIELDS.items():
        if (value := environ.get(ENV_PREFIX + suffix)) is not None:
            merged[field] = value
    for suffix, (section, field) in _ENV_NESTED.items():
        if (value := environ.get(ENV_PREFIX + suffix)) is not None:
            existing = merged.get(section)
            merged[section] = {**(existing if isinstance(existing, dict) else {}), field: value}
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    if not text.strip():
        raise ConfigError([f"{path}: the file is empty; see deploy/examples/config.toml"])
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


def config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    chosen = explicit or env.get(ENV_PREFIX + "CONFIG")
    return Path(chosen) if chosen else None


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (if any), apply ``FORUM_MONITOR_*`` overrides and validate."""
    env = os.environ if environ is None else environ
    data = read_toml(path) if path is not None else {}
    return settings_from_mapping(_env_overrides(data, env))
