"""Config validation: a malformed config exits 2 with one line per problem naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import load_settings, parse_duration
from monitor.errors import ConfigError
from tests.support import REPO_ROOT

GOOD_COMMUNITY = 'id = "outlier"\nsource = "reddit"\nsubreddit = "outlier_ai"\n'

# (name, TOML text, the field path every expected line starts with, a word the line must contain)
MALFORMED: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("invalid toml", "[[communities]\nid = 1", [("", "invalid TOML")]),
    ("empty file", "", [("", "empty")]),
    ("whitespace only", "\n   \n", [("", "empty")]),
    (
        "unknown source kind",
        '[[communities]]\nid = "a"\nsource = "myspace"\n',
        [("communities[0].source", "unknown source kind")],
    ),
    (
        "missing source kind",
        '[[communities]]\nid = "a"\nsubreddit = "x_y"\n',
        [("communities[0].source", "field required")],
    ),
    (
        "duplicate community id",
        f"[[communities]]\n{GOOD_COMMUNITY}[[communities]]\n{GOOD_COMMUNITY}",
        [("communities[1].id", "duplicate")],
    ),
    (
        "missing subreddit",
        '[[communities]]\nid = "a"\nsource = "reddit"\n',
        [("communities[0].subreddit", "field required")],
    ),
    (
        "mastodon without instance or hashtag",
        '[[communities]]\nid = "a"\nsource = "mastodon"\n',
        [
            ("communities[0].base_url", "field required"),
            ("communities[0].hashtag", "field required"),
        ],
    ),
    (
        "mastodon hashtag with its #",
        '[[communities]]\nid = "a"\nsource = "mastodon"\nbase_url = "https://m.example"\n'
        'hashtag = "#gigwork"\n',
        [("communities[0].hashtag", "without its leading #")],
    ),
    (
        "stackexchange without a site",
        '[[communities]]\nid = "a"\nsource = "stackexchange"\n',
        [("communities[0].site", "field required")],
    ),
    (
        "stackexchange site given as a URL",
        '[[communities]]\nid = "a"\nsource = "stackexchange"\nsite = "https://stackoverflow.com"\n',
        [("communities[0].site", "API name")],
    ),
    (
        "stackexchange with six tags (the API answers nothing for more than five)",
        '[[communities]]\nid = "a"\nsource = "stackexchange"\nsite = "stackoverflow"\n'
        'tagged = ["a", "b", "c", "d", "e", "f"]\n',
        [("communities[0].tagged", "1 to 5 tags")],
    ),
    (
        "stackexchange tag with a space",
        '[[communities]]\nid = "a"\nsource = "stackexchange"\nsite = "stackoverflow"\n'
        'tagged = "pay cut"\n',
        [("communities[0].tagged", "'pay cut' is not a tag")],
    ),
    (
        "stackexchange key of two words",
        '[stackexchange]\nkey = "my key"\n',
        [("stackexchange.key", "one word")],
    ),
    (
        "lemmy without instance or community",
        '[[communities]]\nid = "a"\nsource = "lemmy"\n',
        [
            ("communities[0].base_url", "field required"),
            ("communities[0].community", "field required"),
        ],
    ),
    (
        "lemmy community as a mention, a link and a bad host",
        '[[communities]]\nid = "a"\nsource = "lemmy"\nbase_url = "https://lemmy.world"\n'
        'community = "!technology@lemmy.world"\n'
        '[[communities]]\nid = "b"\nsource = "lemmy"\nbase_url = "https://lemmy.world"\n'
        'community = "https://lemmy.world/c/technology"\n'
        '[[communities]]\nid = "c"\nsource = "lemmy"\nbase_url = "https://lemmy.world"\n'
        'community = "technology@lemmy world"\n',
        [
            ("communities[0].community", "without Lemmy's leading !"),
            ("communities[1].community", "the community's name"),
            ("communities[2].community", "not a host name"),
        ],
    ),
    (
        "interval in parsecs",
        f'[[communities]]\n{GOOD_COMMUNITY}interval = "5 parsecs"\n',
        [("communities[0].interval", "not a duration")],
    ),
    (
        "zero interval",
        f"[[communities]]\n{GOOD_COMMUNITY}interval = 0\n",
        [("communities[0].interval", "greater than zero")],
    ),
    (
        "negative interval",
        f'[[communities]]\n{GOOD_COMMUNITY}interval = "-5m"\n',
        [("communities[0].interval", "not a duration")],
    ),
    (
        "typo in a key",
        f'[[communities]]\n{GOOD_COMMUNITY}intervall = "5m"\n',
        [("communities[0].intervall", "unknown key")],
    ),
    (
        "typo at top level",
        f"store_body = true\n[[communities]]\n{GOOD_COMMUNITY}",
        [("store_body", "unknown key")],
    ),
    (
        "history_days is a string",
        f'[[communities]]\n{GOOD_COMMUNITY}history_days = "thirty"\n',
        [("communities[0].history_days", "integer")],
    ),
    (
        "negative history_days",
        f"[[communities]]\n{GOOD_COMMUNITY}history_days = -1\n",
        [("communities[0].history_days", "greater than or equal to 0")],
    ),
    (
        "base_url is ftp",
        f'[[communities]]\n{GOOD_COMMUNITY}base_url = "ftp://mirror.example"\n',
        [("communities[0].base_url", "http(s)")],
    ),
    (
        "discourse without base_url",
        '[[communities]]\nid = "d"\nsource = "discourse"\n',
        [("communities[0].base_url", "field required")],
    ),
    (
        "communities is not a list",
        'communities = "outlier"\n',
        [("communities", "valid list")],
    ),
    (
        "store_bodies is not a boolean",
        f'store_bodies = "sometimes"\n[[communities]]\n{GOOD_COMMUNITY}',
        [("store_bodies", "boolean")],
    ),
    (
        "listen without a port",
        'listen = "localhost"\n',
        [("listen", "HOST:PORT")],
    ),
    (
        "database url of an unknown kind",
        'database_url = "mysql://db/forum"\n',
        [("database_url", "postgresql")],
    ),
    (
        "keyword group with an upper-case name",
        '[keywords]\nPay = ["pay cut"]\n',
        [("keywords.Pay", "group name")],
    ),
    (
        "keyword group that is not a list",
        '[keywords]\npay = "pay cut"\n',
        [("keywords.pay", "non-empty list")],
    ),
    (
        "every invalid keyword group, each named",
        '[keywords]\nPay = ["pay cut"]\nleave = "quit"\nok = ["fine"]\nempty = []\n'
        '[[communities]]\nid = "a"\nsource = "reddit"\nsubreddit = "x_y"\n'
        '[communities.keywords]\nBad-Name = ["x"]\nblank = ["  "]\n',
        [
            ("keywords.Pay", "group name"),
            ("keywords.leave", "non-empty list"),
            ("keywords.empty", "non-empty list"),
            ("communities[0].keywords.Bad-Name", "group name"),
            ("communities[0].keywords.blank", "non-empty strings"),
        ],
    ),
    (
        "server limits out of range",
        '[server]\nmax_connections = 0\nheader_timeout = "1h"\n',
        [
            ("server.max_connections", "greater than or equal to 1"),
            ("server.header_timeout", "10m"),
        ],
    ),
    (
        "reddit user agent in the wrong form",
        '[reddit]\nuser_agent = "my bot"\n',
        [("reddit.user_agent", "(by /u/<user>)")],
    ),
    (
        "community id with a space",
        '[[communities]]\nid = "out lier"\nsource = "reddit"\nsubreddit = "x_y"\n',
        [("communities[0].id", "pattern")],
    ),
    (
        "pseudonym key of 16 characters (accepted before keys had to be 32 bytes)",
        'pseudonym_key = "sixteen-chars-ok"\n',
        [("pseudonym_key", "at least 32 bytes, this one has 16")],
    ),
    (
        "pseudonym key of 31 bytes",
        f'pseudonym_key = "{"k" * 31}"\n',
        [("pseudonym_key", "at least 32 bytes, this one has 31")],
    ),
    (
        "pseudonym key padded with spaces to 32",
        f'pseudonym_key = "  {"k" * 28}  "\n',
        [("pseudonym_key", "this one has 28")],
    ),
    (
        "two problems in two communities",
        '[[communities]]\nid = "a"\nsource = "reddit"\n'
        '[[communities]]\nid = "b"\nsource = "rss"\nurl = "file:///etc/passwd"\n',
        [("communities[0].subreddit", "field required"), ("communities[1].url", "http(s)")],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_exits_2_naming_each_field(
    name: str,
    text: str,
    expected: list[tuple[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, (field, word) in zip(sorted(lines), sorted(expected), strict=True):
        prefix = f"{field}: " if field else f"{path}: "
        assert line.startswith(prefix), line
        assert word in line, line
    assert "Traceback" not in captured.err
    assert captured.out == ""


SECRET = "hunter2sekret"


@pytest.mark.parametrize(
    ("text", "field", "word"),
    [
        (
            '[[communities]]\nid = "f"\nsource = "discourse"\n'
            f'base_url = "https://monitor:{SECRET}@forum.example"\n',
            "communities[0].base_url",
            "credentials",
        ),
        (
            '[[communities]]\nid = "f"\nsource = "rss"\n'
            f'url = "https://monitor:{SECRET}@forum.example/posts.rss"\n',
            "communities[0].url",
            "credentials",
        ),
        (
            '[[communities]]\nid = "f"\nsource = "hackernews"\n'
            f'search_base_url = "https://{SECRET}@hn.example"\n',
            "communities[0].search_base_url",
            "credentials",
        ),
        (
            f'database_url = "postgresql://monitor:p@{SECRET}@db.internal:5432/forum"\n',
            "database_url",
            "unescaped '@'",
        ),
    ],
)
def test_credentials_in_urls_are_refused_and_never_echoed(
    text: str, field: str, word: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password in a forum URL was written into every post's link; check-config echoed a
    rejected URL in full; a database password holding '@' showed up as part of the host."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{field}: ") and word in err, err
    assert SECRET not in err


def test_a_rejected_url_is_shown_without_its_userinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[communities]]\nid = "f"\nsource = "rss"\nurl = "ftp://u:{SECRET}@x/f"\n')
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ftp://x/f" in err and SECRET not in err


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope.toml'}: file not found"


def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO_ROOT / "deploy/examples/config.toml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_env_overrides_file_values(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('database_url = "sqlite:///file.db"\nlisten = "127.0.0.1:1234"\n')
    environ = {
        "FORUM_MONITOR_DATABASE_URL": "postgresql://monitor@db.internal/forum",
        "FORUM_MONITOR_PSEUDONYM_KEY": "k" * 32,
        "FORUM_MONITOR_REDDIT_CLIENT_ID": "client-123",
    }
    settings = load_settings(path, environ)
    assert settings.database_url == "postgresql://monitor@db.internal/forum"
    assert settings.listen == "127.0.0.1:1234"
    assert settings.pseudonym_key == "k" * 32
    assert settings.reddit.client_id == "client-123"


def test_bad_env_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"FORUM_MONITOR_STORE_BODIES": "perhaps"})
    assert caught.value.problems[0].startswith("store_bodies: ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("90s", 90), ("1h30m", 5400), ("2d", 172800), (45, 45), ("250ms", 0.25)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_command_line_has_no_traceback_for_bad_config(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it."""
    path = tmp_path / "config.toml"
    path.write_text('[[communities]]\nid = "a"\nsource = "reddit"\n')
    run = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "communities[0].subreddit: field required"


@pytest.mark.parametrize("key", ["k" * 32, "é" * 16, "0123456789abcdef" * 4])
def test_pseudonym_key_of_32_bytes_or_more_is_accepted(key: str) -> None:
    # "é" is two bytes in UTF-8: sixteen of them are 32 bytes
    assert load_settings(None, {"FORUM_MONITOR_PSEUDONYM_KEY": key}).pseudonym_key == key


def test_short_pseudonym_key_from_the_environment_names_the_field_not_the_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[[communities]]\n{GOOD_COMMUNITY}")
    secret = "hunter2-hunter2-hunter2"  # 23 bytes
    run = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "FORUM_MONITOR_PSEUDONYM_KEY": secret},
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("pseudonym_key: must be at least 32 bytes, this one has 23")
    assert secret not in run.stderr


REDDIT_WARNING = "warning: reddit.user_agent: not set and no contact configured"


def check_config(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``forum-monitor check-config`` on ``text``, as a user runs it."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**environ, **(env or {})},
        timeout=60,
    )


def test_reddit_without_contact_or_user_agent_warns_and_passes(tmp_path: Path) -> None:
    run = check_config(tmp_path, f"[[communities]]\n{GOOD_COMMUNITY}")
    assert run.returncode == 0
    [line] = run.stderr.splitlines()
    assert line.startswith(REDDIT_WARNING), line
    assert "contact" in line and "[reddit] user_agent" in line
    assert run.stdout.strip().endswith(": ok (1 communities)")


USER_AGENT = 'user_agent = "linux:org.example.monitor:1.0 (by /u/someone_real)"'


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (f'contact = "ops@example.org"\n[[communities]]\n{GOOD_COMMUNITY}', {}),
        (f"[[communities]]\n{GOOD_COMMUNITY}", {"FORUM_MONITOR_CONTACT": "ops@example.org"}),
        (f"[reddit]\n{USER_AGENT}\n[[communities]]\n{GOOD_COMMUNITY}", {}),
        # no Reddit community polled: nothing to warn about
        ('[[communities]]\nid = "hn"\nsource = "hackernews"\n', {}),
        (f"[[communities]]\n{GOOD_COMMUNITY}enabled = false\n", {}),
    ],
    ids=["contact", "contact from env", "user_agent", "no reddit", "reddit disabled"],
)
def test_no_warning_when_reddit_can_reach_the_operator(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    run = check_config(tmp_path, text, env)
    assert run.returncode == 0
    assert run.stderr == ""


def test_stackexchange_community_with_a_tag_or_several(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[stackexchange]\nkey = "U4DMV*8nvpm3EOpvf69Rxw(("\n'
        '[[communities]]\nid = "py"\nsource = "stackexchange"\nsite = "stackoverflow"\n'
        'tagged = "Python"\n'
        '[[communities]]\nid = "gig"\nsource = "stackexchange"\nsite = "freelancing"\n'
        'tagged = ["payment", "upwork"]\n'
        '[[communities]]\nid = "math"\nsource = "stackexchange"\nsite = "math"\n'
    )
    settings = load_settings(path, {})
    assert [getattr(c, "tagged", None) for c in settings.communities] == [
        ["python"],  # one tag may be a string; tags are lower case on Stack Exchange
        ["payment", "upwork"],
        None,
    ]
    assert settings.stackexchange.key == "U4DMV*8nvpm3EOpvf69Rxw(("
    overridden = load_settings(path, {"FORUM_MONITOR_STACKEXCHANGE_KEY": "other-key"})
    assert overridden.stackexchange.key == "other-key"


STACKEXCHANGE = 'id = "so"\nsource = "stackexchange"\nsite = "stackoverflow"\n'


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        # 3 requests an idle poll, every 5 minutes: 864 a day, over the 300 without a key
        (f"[[communities]]\n{STACKEXCHANGE}", "at least 864 requests a day"),
        # every 15 minutes: 288 a day, under 300
        (f'[[communities]]\n{STACKEXCHANGE}interval = "15m"\n', None),
        # two of them every 15 minutes: 576
        (
            f'[[communities]]\n{STACKEXCHANGE}interval = "15m"\n'
            f'[[communities]]\n{STACKEXCHANGE.replace("so", "so2", 1)}interval = "15m"\n',
            "at least 576 requests a day",
        ),
        # with a key, 10,000 a day: 864 is well under
        (f'[stackexchange]\nkey = "k"\n[[communities]]\n{STACKEXCHANGE}', None),
        # every 20 seconds with a key: 12,960 a day, over 10,000
        (
            f'[stackexchange]\nkey = "k"\n[[communities]]\n{STACKEXCHANGE}interval = "20s"\n',
            "at least 12960 requests a day",
        ),
    ],
    ids=["5m without key", "15m without key", "two at 15m", "5m with key", "20s with key"],
)
def test_stackexchange_polls_that_would_spend_the_daily_quota_warn(
    tmp_path: Path, text: str, warned: str | None
) -> None:
    run = check_config(tmp_path, text)
    assert run.returncode == 0
    if warned is None:
        assert run.stderr == ""
    else:
        [line] = run.stderr.splitlines()
        assert line.startswith("warning: stackexchange.key: ") and warned in line, line
