"""Files and folders edged and edgectl create are 0640 and 0750 whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.files import create_new, make_folders, open_for_writing


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_new_files_are_0640_and_existing_ones_keep_their_mode(tmp_path: Path) -> None:
    new = tmp_path / "export.jsonl"
    with open_for_writing(new) as fh:
        fh.write(b"one\n")
    assert mode(new) == 0o640
    existing = tmp_path / "mine.png"
    existing.write_bytes(b"old content")
    existing.chmod(0o600)
    with open_for_writing(existing) as fh:
        fh.write(b"new")
    assert (mode(existing), existing.read_bytes()) == (0o600, b"new")
    with pytest.raises(FileExistsError):
        create_new(new)


def test_missing_folders_are_0750_and_existing_ones_are_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    make_folders(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o750
    assert mode(tmp_path) == 0o755
