"""A small real tmpfs that tests fill up, so that SQLite meets a true full disk (ENOSPC)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FILLER = ".filler"


class TmpfsUnavailable(RuntimeError):
    """A tmpfs cannot be mounted here (not root, or no mount permission)."""


def mount_tmpfs(where: Path, size_kib: int) -> Path:
    """Mount a tmpfs of `size_kib` at `where`; TmpfsUnavailable if we cannot."""
    if os.geteuid() != 0:
        raise TmpfsUnavailable("a small tmpfs (a disk that fills up) needs root to mount")
    where.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        raise TmpfsUnavailable(f"cannot mount a tmpfs at {where}: {mount.stderr.strip()}")
    return where


def unmount(where: Path) -> None:
    subprocess.run(["umount", "--lazy", str(where)], check=True)


@contextmanager
def small_tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_kib` at `where` for the block; skip the test if we cannot."""
    try:
        mount_tmpfs(where, size_kib)
    except TmpfsUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield where
    finally:
        unmount(where)


def fill(disk: Path) -> int:
    """Take every free byte of `disk` with a filler file; returns how many bytes it took."""
    taken = 0
    fd = os.open(disk / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = 1 << 16
        while chunk:
            try:
                taken += os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return taken


def free(disk: Path) -> None:
    """Give the filler's space back."""
    (disk / FILLER).unlink()
