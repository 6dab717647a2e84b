"""GitHub Discussions in the config: the repository's form, the category, and the token
GitHub requires (``check-config`` names ``github.token`` when it is missing, and never
prints it when it is there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import GitHubCommunity, load_settings, settings_from_mapping
from monitor.errors import ConfigError
from tests.support import REPO_ROOT

GITHUB = '[[communities]]\nid = "gh"\nsource = "github"\nrepository = "PyGithub/PyGithub"\n'
TOKEN = "ghp_not-a-real-token-0123456789"


def check_config(tmp_path: Path, text: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``forum-monitor check-config`` on ``text``, as a user runs it, with only ``env``'s
    FORUM_MONITOR_* variables."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**environ, **env},
        timeout=60,
    )


def test_a_github_community_without_a_token_is_refused_naming_github_token(
    tmp_path: Path,
) -> None:
    run = check_config(tmp_path, GITHUB)
    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("github.token: field required: communities[0] ('gh')"), line
    assert "FORUM_MONITOR_GITHUB_TOKEN" in line and "[github] token" in line
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("where", ["file", "environment"])
def test_a_token_from_the_file_or_the_environment_passes_and_is_never_printed(
    tmp_path: Path, where: str
) -> None:
    if where == "file":
        run = check_config(tmp_path, f'[github]\ntoken = "{TOKEN}"\n{GITHUB}')
    else:
        run = check_config(tmp_path, GITHUB, FORUM_MONITOR_GITHUB_TOKEN=TOKEN)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.strip().endswith(": ok (1 communities)")
    assert TOKEN not in run.stdout + run.stderr


def test_the_environment_token_wins_and_the_settings_never_show_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[github]\ntoken = "from-the-file"\n{GITHUB}category = "Q&A"\n')
    settings = load_settings(path, {"FORUM_MONITOR_GITHUB_TOKEN": TOKEN})
    assert settings.github.token == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
    community = settings.communities[0]
    assert isinstance(community, GitHubCommunity)
    assert (community.repository, community.category) == ("PyGithub/PyGithub", "Q&A")


@pytest.mark.parametrize("token", ['""', '"   "'])
def test_an_empty_token_is_no_token(tmp_path: Path, token: str) -> None:
    run = check_config(tmp_path, f"[github]\ntoken = {token}\n{GITHUB}")
    assert run.returncode == 2 and run.stderr.startswith("github.token: field required")


def test_a_disabled_github_community_needs_no_token(tmp_path: Path) -> None:
    run = check_config(tmp_path, f"{GITHUB}enabled = false\n")
    assert (run.returncode, run.stderr) == (0, "")


@pytest.mark.parametrize(
    "repository",
    ["PyGithub", "PyGithub/", "/PyGithub", "a/b/c", "-owner/name", "owner/..", "owner/na me"],
)
def test_a_repository_that_is_not_owner_slash_name_names_the_field(repository: str) -> None:
    data = {
        "github": {"token": TOKEN},
        "communities": [{"id": "gh", "source": "github", "repository": repository}],
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    [problem] = caught.value.problems
    assert problem.startswith("communities[0].repository: ") and "owner/name" in problem


def test_a_missing_repository_names_the_field(tmp_path: Path) -> None:
    text = '[github]\ntoken = "t"\n[[communities]]\nid = "gh"\nsource = "github"\n'
    run = check_config(tmp_path, text)
    assert run.returncode == 2
    assert run.stderr.strip() == "communities[0].repository: field required"


def test_the_example_configs_github_parts_are_valid_once_uncommented(tmp_path: Path) -> None:
    """deploy/examples/config.toml ships the [github] section and a github community
    commented out (without a token check-config would refuse them)."""
    text = (REPO_ROOT / "deploy/examples/config.toml").read_text(encoding="utf-8")
    section = '# [github]\n# token = "github_pat_..."'
    assert section in text
    text = text.replace(section, '[github]\ntoken = "github_pat_..."')
    block = text.index('# [[communities]]\n# id = "pygithub-discussions"')
    text = text[:block] + "\n".join(line[2:] for line in text[block:].splitlines()) + "\n"
    run = check_config(tmp_path, text)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith(": ok (8 communities)")
