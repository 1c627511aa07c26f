"""Files and folders edged creates: 0640 and 0750 whatever the umask (sales are in them).

Only the owner writes and the group (`edged`: technicians, backups) reads; other users see
nothing. SQLite gives a database's `-wal` and `-shm` files the mode of the database file, so
a journal created here keeps all three at 0640.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import IO

FILE_MODE = 0o640
FOLDER_MODE = 0o750


def make_folders(folder: Path) -> None:
    """Create `folder` and its missing parents, each 0750; existing ones are left as they are."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=FOLDER_MODE)
            os.chmod(path, FOLDER_MODE)  # mkdir's mode is masked by the umask


def create_new(path: Path) -> int:
    """Create `path`, which must not exist (FileExistsError), 0640; returns its descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # os.open's mode is masked by the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


def tighten(path: Path) -> int | None:
    """Take group write and all rights of other users off an existing file (one made before
    edged set modes, e.g. 0644); returns its former mode if it changed, None otherwise."""
    try:
        former = stat.S_IMODE(os.stat(path).st_mode)
        if not former & 0o027:
            return None
        os.chmod(path, former & ~0o027)
    except FileNotFoundError:
        return None
    return former


def open_for_writing(path: Path) -> IO[bytes]:
    """Open `path` to write it: created 0640 if missing, else emptied, keeping its own mode."""
    try:
        fd = create_new(path)
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    return os.fdopen(fd, "wb")


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a file created, renamed or linked in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
