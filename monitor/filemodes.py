"""Private files and directories: what the service creates is 0700/0600, and what it finds
looser it names (it never changes the modes of files and directories it did not create)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and its parents) if missing, the directory itself 0700."""
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return  # made by someone else a moment ago: theirs, not ours to change
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def open_to_others(path: Path) -> int | None:
    """The permission bits of ``path`` when group or others have any, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:  # missing, or below a file: nothing there to be open
        return None
    return mode if mode & 0o077 else None


def warn_if_open(path: Path, *, what: str, private_mode: int) -> None:
    """Log one warning naming ``path`` and the chmod that closes it, if it is open to others."""
    mode = open_to_others(path)
    if mode is not None:
        log.warning(
            "%s %s is open to group or others (mode %04o); run chmod %o %s",
            what,
            path,
            mode,
            private_mode,
            path,
        )


def fsync_dir(directory: Path) -> None:
    """Make a new name in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
