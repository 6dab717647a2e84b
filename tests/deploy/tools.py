"""Finding and running the linters and validators the deployment tests use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import missing

# pip's console scripts sit beside the interpreter, which `make test` does not put on PATH
VENV_BIN = Path(sys.executable).parent


def find_tool(name: str, *, install: str) -> str:
    """``name`` from the test virtualenv, else from PATH; missing (a failure in CI) if neither."""
    beside = VENV_BIN / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed ({install})")
    return found


def run(
    *args: str | Path, timeout: float = 120, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a tool, returning what it said; the caller asserts on the exit code."""
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
