"""Startup failures as a user meets them: one line naming what failed and how to fix it,
exit 1, no traceback, and nothing announced before the listening socket is bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port


def forum_monitor(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, without any FORUM_MONITOR_* of the caller."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FORUM_MONITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**clean, **(env or {})},
    )


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another process (this test) listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def test_serve_on_a_port_in_use_is_one_line_and_announces_nothing(
    tmp_path: Path, occupied_port: int
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('pseudonym_key = "test-key-0123456789abcdef-0123456789"\n')
    run = forum_monitor(
        "serve", "--config", str(config), "--listen", f"127.0.0.1:{occupied_port}", cwd=tmp_path
    )
    assert run.returncode == 1
    line = one_line(run)
    assert f"127.0.0.1:{occupied_port}" in line and "in use" in line, line
    assert "--listen" in line, "the line says how to fix it"
    assert "serving" not in run.stdout + run.stderr


def test_demo_on_a_port_in_use_prints_no_urls(tmp_path: Path, occupied_port: int) -> None:
    run = forum_monitor("demo", "--no-live", "--listen", f"127.0.0.1:{occupied_port}", cwd=tmp_path)
    assert run.returncode == 1
    line = one_line(run)
    assert f"127.0.0.1:{occupied_port}" in line and "in use" in line, line
    assert "http://" not in run.stdout, run.stdout


def test_unknown_listen_host_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('pseudonym_key = "test-key-0123456789abcdef-0123456789"\n')
    run = forum_monitor(
        "serve", "--config", str(config), "--listen", "no-such-host.invalid:9808", cwd=tmp_path
    )
    assert run.returncode == 1
    assert "no-such-host.invalid:9808" in one_line(run)


def _unwritable_data_dir(tmp_path: Path) -> Path:
    """A data_dir below a regular file: no one can create it, root included."""
    (tmp_path / "afile").write_text("a file where a directory should be\n")
    return tmp_path / "afile" / "sub"


def test_unwritable_data_dir_for_the_generated_key_is_one_line(tmp_path: Path) -> None:
    """The store lives elsewhere (as with PostgreSQL); only the key goes to data_dir."""
    data_dir = _unwritable_data_dir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\ndatabase_url = "sqlite:///{tmp_path / "store.db"}"\n'
    )
    run = forum_monitor(
        "serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert run.returncode == 1
    line = one_line(run)
    assert str(data_dir) in line and "data_dir" in line and "pseudonym_key" in line, line
    assert "serving" not in run.stdout + run.stderr


def test_unwritable_data_dir_for_the_sqlite_store_is_one_line(tmp_path: Path) -> None:
    data_dir = _unwritable_data_dir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\npseudonym_key = "test-key-0123456789abcdef-0123456789"\n'
    )
    run = forum_monitor(
        "serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert run.returncode == 1
    line = one_line(run)
    assert str(data_dir) in line and "data_dir" in line, line
    assert "internal error" not in line


@pytest.mark.postgres
def test_unwritable_data_dir_with_postgresql_is_one_line(tmp_path: Path, pg_url: str) -> None:
    data_dir = _unwritable_data_dir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{data_dir}"\ndatabase_url = "{pg_url}"\n')
    run = forum_monitor(
        "serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert run.returncode == 1
    line = one_line(run)
    assert str(data_dir) in line and "pseudonym_key" in line, line
