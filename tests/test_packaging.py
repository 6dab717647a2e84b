"""The installed package, not the checkout: a wheel carries every package and the
migrations, and a store is created from the wheel alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def listed_packages() -> set[str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return set(pyproject["tool"]["setuptools"]["packages"])


def test_every_package_in_the_tree_is_listed() -> None:
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for init in (REPO_ROOT / "monitor").rglob("__init__.py")
    }
    listed = listed_packages()
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert {"monitor._alembic", "monitor._alembic.versions"} <= listed


def test_a_wheel_carries_the_migrations_and_migrates_a_store(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(REPO_ROOT),
        ],
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("forum_monitor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    migrations = sorted(p.name for p in (REPO_ROOT / "alembic" / "versions").glob("*.py"))
    assert migrations, "no migrations in the checkout"
    for name in [*(f"versions/{m}" for m in migrations), "env.py", "script.py.mako"]:
        assert f"monitor/_alembic/{name}" in names
    assert "monitor/web/status.css" in names

    # The extracted wheel first on the path, run from a directory with no alembic/ in it.
    script = (
        "import sqlite3, sys\n"
        "from sqlalchemy import create_engine\n"
        "from monitor.store import db\n"
        "assert db.ALEMBIC_DIR.parent.name == 'monitor', db.ALEMBIC_DIR\n"
        "assert str(db.ALEMBIC_DIR).startswith(sys.argv[1]), db.ALEMBIC_DIR\n"
        "db.upgrade(create_engine('sqlite:///' + sys.argv[2]))\n"
        "tables = {r[0] for r in sqlite3.connect(sys.argv[2]).execute(\n"
        "    \"select name from sqlite_master where type='table'\")}\n"
        "assert {'posts', 'authors', 'alembic_version'} <= tables, tables\n"
        "print(sqlite3.connect(sys.argv[2]).execute('select version_num from alembic_version')"
        ".fetchone()[0])\n"
    )
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-c", script, str(site), str(tmp_path / "store.db")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    newest = migrations[-1].split("_", 1)[0]
    assert result.stdout.strip() == newest
