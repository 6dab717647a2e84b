"""deploy/systemd/forum-monitor.service, checked by systemd's own analyzer.

`systemd-analyze verify` also checks that ExecStart's program exists and is executable;
the unit names where the README installs it (/opt/forum-monitor/venv), which a test
machine does not have, so the checks run on a copy whose ExecStart program is this
test environment's `forum-monitor` and which differs from the unit in nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.tools import VENV_BIN, find_tool, run
from tests.support import REPO_ROOT, missing

UNIT = REPO_ROOT / "deploy" / "systemd" / "forum-monitor.service"
INSTALLED_PROGRAM = "/opt/forum-monitor/venv/bin/forum-monitor"
# systemd-analyze security's exposure scale: 0 (locked down) .. 10; under 2 is "OK"
MAX_EXPOSURE = 2.0
SYSTEMD = "Debian: systemd"


def installed_here() -> str:
    program = VENV_BIN / "forum-monitor"
    if not program.is_file():
        missing(f"{program} is not installed (pip install -e .)")
    return str(program)


def unit_for_this_machine(directory: Path, text: str | None = None) -> Path:
    text = UNIT.read_text() if text is None else text
    copy = directory / UNIT.name
    copy.write_text(
        text.replace(f"ExecStart={INSTALLED_PROGRAM} ", f"ExecStart={installed_here()} ")
    )
    return copy


def directives(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (systemd keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            section = match[1]
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def verify(unit: Path) -> str:
    analyze = find_tool("systemd-analyze", install=SYSTEMD)
    result = run(analyze, "verify", "--man=no", unit, cwd=unit.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_copy_differs_only_in_where_the_program_is(tmp_path: Path) -> None:
    original = UNIT.read_text().splitlines()
    copy = unit_for_this_machine(tmp_path).read_text().splitlines()
    changed = [(a, b) for a, b in zip(original, copy, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith(f"ExecStart={INSTALLED_PROGRAM} ")


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    assert verify(unit_for_this_machine(tmp_path)).strip() == ""


def test_verify_speaks_up_about_a_misspelled_directive(tmp_path: Path) -> None:
    """The silence above means something: one typo and verify names it."""
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    output = verify(unit_for_this_machine(tmp_path, text))
    assert "Unknown key" in output and "ProtectSytem" in output


def test_exposure_is_low(tmp_path: Path) -> None:
    analyze = find_tool("systemd-analyze", install=SYSTEMD)
    unit = unit_for_this_machine(tmp_path)
    result = run(
        analyze,
        "security",
        "--offline=yes",
        # --threshold counts in tenths of the printed level
        f"--threshold={round(MAX_EXPOSURE * 10)}",
        "--no-pager",
        unit,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", output)
    assert score and float(score[1]) <= MAX_EXPOSURE, output


def test_hardening_the_issue_asks_for() -> None:
    found = directives(UNIT.read_text())

    def value(key: str) -> str:
        assert key in found, key
        return found[key][-1]

    assert value("Service.DynamicUser") == "yes" or "Service.User" in found
    assert value("Service.ProtectSystem") == "strict"
    assert value("Service.NoNewPrivileges") == "yes"
    assert value("Service.StateDirectory") == "forum-monitor"
    assert value("Service.StateDirectoryMode") == "0700"
    assert value("Service.CapabilityBoundingSet") == ""
    # the service's data_dir is the state directory, the only place it may write
    assert "FORUM_MONITOR_DATA_DIR=%S/forum-monitor" in value("Service.Environment").split()


def test_serves_the_config_and_stops_as_serve_expects() -> None:
    found = directives(UNIT.read_text())
    (start,) = found["Service.ExecStart"]
    program, *args = start.split()
    assert program == INSTALLED_PROGRAM
    assert args[:1] == ["serve"] and "--config" in args
    # a unit must not wave through a lost pseudonym key (README, "Command line")
    assert "--accept-new-key" not in args
    assert found["Service.KillSignal"] == ["SIGTERM"]
    assert int(found["Service.TimeoutStopSec"][0].removesuffix("s")) > 10
    assert found["Service.RestartPreventExitStatus"] == ["2"]  # a bad config stays down
    assert found["Install.WantedBy"] == ["multi-user.target"]
